"""The glusterfs driver end to end: client-shaped connection_info -> plugin -> simulated pool
-> the glusterfs SM reading a real GlusterFS volume (glusterd on loopback, libgfapi)."""

import uuid

from conftest import PluginError, plugin, state
from drivercheck import concurrent, fault_at_every_call, idempotent, placed
from test_sim_gluster import gluster_sr_dir


def gluster(peers, sr_uuid=None, **data):
    """A Cinder-style glusterfs connection_info for a VHD laid out on the peer's volume."""
    peers.gluster  # noqa: B018 (the property starts glusterd, or skips)
    sr_uuid, vdi = sr_uuid or str(uuid.uuid4()), str(uuid.uuid4())
    gluster_sr_dir(peers, sr_uuid, [(vdi, 1 << 30)])
    d = {
        "export": "%s:/%s" % (peers.gluster.address, peers.GLUSTER_VOLUME),
        "sr_uuid": sr_uuid,
        "vdi_uuid": vdi,
        "options": "-o backup-volfile-servers=gluster2.example.com:127.0.0.3",
    }
    d.update(data)
    return {"driver_volume_type": "glusterfs", "data": d}


def test_glusterfs_attach_detach(ppool, peers):
    xapi = ppool.session().xenapi
    info = gluster(peers, fetch_attempts=3)
    before = state(ppool)
    _r, vm_uuid, host = placed(ppool, xapi, "vm-3")
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    assert xapi.SR.get_type(sr) == "glusterfs" and xapi.SR.get_shared(sr)
    for p in xapi.SR.get_PBDs(sr):
        assert xapi.PBD.get_device_config(p) == {
            "server": info["data"]["export"],
            "backupservers": "gluster2.example.com:127.0.0.3",
            "fetchattempts": "3",
        }
    vdi = xapi.VDI.get_by_uuid(info["data"]["vdi_uuid"])
    assert xapi.VDI.get_virtual_size(vdi) == str(1 << 30)  # read from the VHD footer
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    assert xapi.VBD.get_currently_attached(vbd)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_glusterfs_through_the_client(ppool, peers):
    import xenvol

    info = gluster(peers)
    before = state(ppool)
    c = xenvol.Client(ppool.url, "root", ppool.info["password"])
    try:
        att = c.attach(info, "vm-3", mountpoint="xvdc")
        assert att.device == "xvdc" and att.plugged
        assert [a.vbd_uuid for a in c.attachments("vm-3")] == [att.vbd_uuid]
        assert [a.vbd_uuid for a in c.detach(vm="vm-3", mountpoint="xvdc")] == [att.vbd_uuid]
    finally:
        c.close()
    assert state(ppool) == before


def test_glusterfs_through_a_backup_server(ppool, peers):
    # the server is down (nothing on 127.0.0.1:24007); the SR mounts from the last backup
    xapi = ppool.session().xenapi
    info = gluster(
        peers,
        export="127.0.0.1:/%s" % peers.GLUSTER_VOLUME,
        backup_servers=["127.0.0.3", peers.gluster.address],
        options=None,
    )
    del info["data"]["options"]
    before = state(ppool)
    _r, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_glusterfs_failures_leave_the_pool_as_it_was(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    _r, vm_uuid, host = placed(ppool, xapi, "vm-1")
    for info, code in (
        # no glusterd answers: the SM's mount failure, SR_BACKEND_FAILURE_12
        (gluster(peers, export="127.0.0.1:/%s" % peers.GLUSTER_VOLUME), "12"),
        (gluster(peers, export="%s:/nosuch" % peers.gluster.address), "12"),
    ):
        try:
            plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
            raise AssertionError("attached %r" % info)
        except PluginError as e:
            assert e.code == "XENVOL_BACKEND_FAILURE" and e.details["sm_code"] == code, e.details
            assert "mount failed with return code 1" in e.message
        assert state(ppool) == before
    # the SR directory is there but not that VHD: the scan finds no such VDI
    info = gluster(peers)
    info["data"]["vdi_uuid"] = str(uuid.uuid4())
    try:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        raise AssertionError("attached a missing VDI")
    except PluginError as e:
        assert e.code == "XENVOL_VDI_NOT_FOUND" and e.details["field"] == "data.vdi_uuid"
    assert state(ppool) == before


def test_glusterfs_fault_at_every_xapi_call(ppool, peers):
    fault_at_every_call(ppool, gluster(peers))


def test_glusterfs_idempotent_and_concurrent(ppool, peers):
    idempotent(ppool, gluster(peers))
    sr_uuid = str(uuid.uuid4())
    concurrent(
        ppool,
        [("vm-1", gluster(peers, sr_uuid=sr_uuid)), ("vm-3", gluster(peers, sr_uuid=sr_uuid))],
    )
