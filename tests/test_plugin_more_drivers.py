"""cephfs driver (simulated SM, validated as CephFSSR.py reads its device_config), glusterfs
input checks (its attaches run against a real glusterd: test_plugin_gluster.py), and the
clear refusals of types XenServer has no SR for."""

import uuid

import pytest

from conftest import plugin, state
from drivercheck import concurrent, fault_at_every_call, idempotent, placed, refused

BAD = "XENVOL_INVALID_CONNECTION_INFO"


def ceph(pool, **data):
    sr_uuid, vdi = data.pop("sr_uuid", None) or str(uuid.uuid4()), str(uuid.uuid4())
    pool.admin.put_vdi(sr_uuid, vdi, {"virtual_size": str(1 << 30)})
    d = {
        "server": ["10.0.0.1", "10.0.0.2"],
        "serverpath": "/vols",
        "sr_uuid": sr_uuid,
        "vdi_uuid": vdi,
        "name": "xen",
        "secretfile": "/etc/ceph/xen.secret",
    }
    d.update(data)
    return {"driver_volume_type": "cephfs", "data": d}


def test_cephfs_device_config(ppool):
    xapi = ppool.session().xenapi
    info = ceph(ppool)
    before = state(ppool)
    _r, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    assert xapi.SR.get_type(sr) == "cephfs"
    for p in xapi.SR.get_PBDs(sr):
        assert xapi.PBD.get_device_config(p) == {
            "server": "10.0.0.1,10.0.0.2",
            "serverpath": "/vols",
            "serverport": "6789",
            "options": "name=xen,secretfile=/etc/ceph/xen.secret",
        }
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


@pytest.mark.slow
def test_fault_at_every_xapi_call(ppool):
    fault_at_every_call(ppool, ceph(ppool))


@pytest.mark.slow
def test_idempotent_and_concurrent(ppool):
    idempotent(ppool, ceph(ppool))
    sr_uuid = str(uuid.uuid4())
    concurrent(
        ppool, [("vm-1", ceph(ppool, sr_uuid=sr_uuid)), ("vm-3", ceph(ppool, sr_uuid=sr_uuid))]
    )


@pytest.mark.parametrize(
    "data,field",
    [
        ({"export": "gluster1"}, "data.export"),
        ({"export": "gluster1:/gv0/sub"}, "data.export"),
        ({"export": "bad host:/gv0"}, "data.export"),
        ({"export": "[::1]:/gv0"}, "data.export"),
        ({"options": "-o log-level=DEBUG"}, "data.options"),
        ({"options": None, "backup_servers": ["g2", "g3:24007"]}, "data.backup_servers[1]"),
        ({"fetch_attempts": 0}, "data.fetch_attempts"),
        ({"fetch_attempts": "3; reboot"}, "data.fetch_attempts"),
        ({"sr_uuid": "x"}, "data.sr_uuid"),
    ],
)
def test_glusterfs_hostile_input(ppool, data, field):
    d = {"export": "g1:/gv0", "sr_uuid": str(uuid.uuid4()), "vdi_uuid": str(uuid.uuid4())}
    d.update(data)
    d = dict((k, v) for k, v in d.items() if v is not None)
    refused(ppool, {"driver_volume_type": "glusterfs", "data": d}, field, code=BAD)


@pytest.mark.parametrize(
    "data,field",
    [
        ({"server": []}, "data.server"),
        ({"server": "mon1:6789"}, "data.server[0]"),
        ({"server": ["mon1", "bad host"]}, "data.server[1]"),
        ({"serverpath": "vols"}, "data.serverpath"),
        ({"serverpath": "/a/../b"}, "data.serverpath"),
        ({"serverport": 70000}, "data.serverport"),
        ({"name": "a,secret=x"}, "data.name"),
        ({"secret": "AQBxyz=="}, "data.secret"),
        ({"secretfile": "relative.secret"}, "data.secretfile"),
    ],
)
def test_cephfs_hostile_input(ppool, data, field):
    d = {
        "server": "mon1",
        "serverpath": "/",
        "sr_uuid": str(uuid.uuid4()),
        "vdi_uuid": str(uuid.uuid4()),
    }
    d.update(data)
    e = refused(ppool, {"driver_volume_type": "cephfs", "data": d}, field, code=BAD)
    assert "AQBxyz" not in e.message


def test_cinder_glusterfs_volume_file_is_refused_with_the_reason(ppool):
    refused(
        ppool,
        {
            "driver_volume_type": "glusterfs",
            "data": {"export": "g1:/gv0", "name": "volume-42", "format": "raw"},
        },
        "data.sr_uuid",
        "<volume>/<sr_uuid>/<vdi_uuid>.vhd",
        code="XENVOL_UNSUPPORTED_VOLUME",
    )


@pytest.mark.parametrize(
    "vtype,words",
    [
        ("rbd", ["RBD", "/etc/xenvol/drivers.d"]),
        ("nvmeof", ["NVMe"]),
        ("iser", ["RDMA"]),
        ("quobyte", ["Quobyte"]),
        ("vzstorage", ["Virtuozzo"]),
        ("scaleio", ["PowerFlex"]),
    ],
)
def test_types_without_a_xenserver_sr_are_refused_saying_why(ppool, vtype, words):
    e = refused(
        ppool,
        {"driver_volume_type": vtype, "data": {}},
        "connection_info.driver_volume_type",
        "not supported on XenServer",
        code="XENVOL_UNSUPPORTED_VOLUME",
    )
    assert vtype in e.message and all(w in e.message for w in words)


def test_a_drop_in_rbd_driver_takes_precedence_over_the_refusal(ppool):
    import os

    for h in ppool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/drivers.d", "community_rbd.py"), "w") as fh:
            fh.write(
                "from xenvol_dom0.drivers.base import Driver\n\n\n"
                "class RBD(Driver):\n    volume_types = ('rbd',)\n    sr_type = 'rbdsr'\n"
            )
    xapi = ppool.session().xenapi
    out = plugin(xapi, ppool.host(0), "list_drivers")
    rbd = [d for d in out["drivers"] if d["driver_volume_type"] == "rbd"]
    assert rbd and rbd[0]["origin"].startswith("drivers.d ") and out["failed"] == []
