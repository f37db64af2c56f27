"""The nfs, xensm and file drivers, connect/disconnect, and list_drivers, through the real
plugin path; nfs against the real NFS server."""

import os
import uuid

import pytest

from conftest import API_LEVEL, PluginError, plugin, state
from drivercheck import xensm_volume
from simstorage import write_vhd
from test_plugin_iscsi import ci as iscsi_ci
from test_plugin_iscsi import placed


def make_vhd(directory, size=64 << 20):
    vdi = str(uuid.uuid4())
    write_vhd(os.path.join(directory, vdi + ".vhd"), size)
    return vdi


def nfs_volume(peers, version="3", n=1):
    sr_uuid = str(uuid.uuid4())
    d = os.path.join(peers.nfs_export, sr_uuid)
    os.makedirs(d)
    vdis = [make_vhd(d) for _ in range(n)]
    return sr_uuid, vdis


def test_nfs_attach_detach(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    sr_uuid, (a, b) = nfs_volume(peers, n=2)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    for vdi, version in ((a, "3"), (b, "4.1")):
        info = {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv",
                "sr_uuid": sr_uuid,
                "vdi_uuid": vdi,
                "nfsversion": version,
            },
        }
        out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        assert out["sr_uuid"] == sr_uuid and out["vdi_uuid"] == vdi and out["plugged"]
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_type(sr) == "nfs"
    assert xapi.VDI.get_virtual_size(xapi.VDI.get_by_uuid(a)) == str(64 << 20)
    for vdi in (a, b):
        plugin(xapi, host, "detach_volume", vdi_uuid=vdi)
    assert state(ppool) == before


def test_xenapinfs_export_form_and_missing_vhd(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    sr_uuid, (a,) = nfs_volume(peers)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = {
        "driver_volume_type": "xenapinfs",
        "data": {"export": "127.0.0.1:/srv", "sr_uuid": sr_uuid, "vdi_uuid": str(uuid.uuid4())},
    }
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert e.value.code == "XENVOL_VDI_NOT_FOUND" and e.value.details["field"] == "data.vdi_uuid"
    assert state(ppool) == before
    info["data"]["vdi_uuid"] = a
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_nfs_wrong_export_is_a_backend_failure(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = {
        "driver_volume_type": "nfs",
        "data": {
            "server": "127.0.0.1",
            "serverpath": "/nope",
            "sr_uuid": str(uuid.uuid4()),
            "vdi_uuid": str(uuid.uuid4()),
        },
    }
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert e.value.code == "XENVOL_BACKEND_FAILURE" and e.value.details["sm_code"] == "73"
    assert state(ppool) == before


def test_cinder_generic_nfs_is_refused_clearly(ppool):
    xapi = ppool.session().xenapi
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    for data, field in (
        ({"export": "10.0.0.1:/vols", "name": "volume-1234", "format": "raw"}, "data.sr_uuid"),
        ({"export": "10.0.0.1:/vols", "name": "volume-1", "format": "qcow2"}, "data.format"),
    ):
        with pytest.raises(PluginError) as e:
            plugin(
                xapi,
                host,
                "attach_volume",
                vm_uuid=vm_uuid,
                connection_info={"driver_volume_type": "nfs", "data": data},
            )
        assert e.value.code == "XENVOL_UNSUPPORTED_VOLUME" and e.value.details["field"] == field
        assert "XenServer" in e.value.message
    assert state(ppool) == before


def test_xensm_generic_pass_through(ppool):
    xapi = ppool.session().xenapi
    sr_uuid, info = xensm_volume(
        ppool,
        "cephfs",
        ["sr_type", "server", "serverpath"],
        {"virtual_size": str(1 << 30)},
        server="mon1",
        serverpath="/vols",
        name_label="ceph volume",
        ignored="not listed",
    )
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_type(sr) == "cephfs" and xapi.SR.get_name_label(sr) == "ceph volume"
    pbd = xapi.PBD.get_record(xapi.SR.get_PBDs(sr)[0])
    assert pbd["device_config"] == {"server": "mon1", "serverpath": "/vols"}
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


@pytest.mark.slow
def test_xensm_lun_of_an_hba_sr_is_claimed_with_vdi_create(ppool):
    """The `hba` SM leaves a scanned LUN unmanaged (VDI_NOT_MANAGED at plug) and cannot
    VDI.introduce it, and VDI.set_managed is the SM's alone; the plugin claims it with
    VDI.create on the SR (sm RAWVDI.create), keeping its other_config."""
    xapi = ppool.session().xenapi
    sr_uuid = str(uuid.uuid4())
    target = "500a0982991b8dc5"
    ppool.admin.fc_lun(target, 7, "36001405aa", str(1 << 30))
    before = state(ppool)
    _ref, _vm, member = placed(ppool, xapi, "vm-1")
    for wwpn in ppool.admin.fc_fabric()[member.uuid]:
        ppool.admin.fc_zone(wwpn, target)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = {
        "driver_volume_type": "xensm",
        "data": {
            "sr_uuid": sr_uuid,
            "sr_type": "hba",
            "target_lun": 7,
            "introduce_sr_keys": ["sr_type"],
        },
    }
    out = plugin(xapi, host, "connect_volume", connection_info=info)
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    assert xapi.VDI.get_managed(vdi)
    claims = [k for k in xapi.VDI.get_other_config(vdi) if k.startswith("xenvol-connected-")]
    assert claims == ["xenvol-connected-" + host.uuid]
    att = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert att["plugged"] and att["vdi_uuid"] == out["vdi_uuid"]
    # the connect claim survived (a second introduce would have overwritten other_config)
    assert "xenvol-connected-" + host.uuid in xapi.VDI.get_other_config(vdi)
    plugin(xapi, host, "detach_volume", vbd_uuid=att["vbd_uuid"])
    plugin(xapi, host, "disconnect_volume", connection_info=info)
    assert state(ppool) == before


def test_xensm_password_key_becomes_a_secret(ppool):
    xapi = ppool.session().xenapi
    sr_uuid, info = xensm_volume(
        ppool,
        "iso",
        ["location", "username", "cifspassword"],
        location="//files/isos",
        username="svc",
        cifspassword="Smb-Pass-77",
    )
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(sr_uuid)
    for p in xapi.SR.get_PBDs(sr):
        dconf = xapi.PBD.get_device_config(p)
        assert "cifspassword" not in dconf and "cifspassword_secret" in dconf
    assert "Smb-Pass-77" not in open(os.path.join(host.root, "var/log/xenvol.log")).read()
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_file_driver_on_a_member_host(ppool):
    xapi = ppool.session().xenapi
    ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    d = os.path.join(host.root, "var/lib/xenvol/volumes")
    os.makedirs(d)
    vdi = str(uuid.uuid4())
    with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
        fh.truncate(1 << 20)
    before = state(ppool)
    info = {
        "driver_volume_type": "file",
        "data": {"path": "/var/lib/xenvol/volumes", "vdi_uuid": vdi},
    }
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    assert xapi.SR.get_type(sr) == "file" and xapi.SR.get_shared(sr) is False
    assert [xapi.PBD.get_host(p) for p in xapi.SR.get_PBDs(sr)] == [host.ref]
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_connect_and_disconnect_without_a_vm(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2))
    before = state(ppool)
    dest = ppool.host(2)
    a = plugin(xapi, dest, "connect_volume", connection_info=iscsi_ci(peers, iqn, 1))
    assert a["host_uuid"] == dest.uuid
    vdi = xapi.VDI.get_by_uuid(a["vdi_uuid"])
    assert xapi.VDI.get_other_config(vdi)["xenvol-connected-" + dest.uuid] == "true"
    again = plugin(xapi, dest, "connect_volume", connection_info=iscsi_ci(peers, iqn, 1))
    assert again["vdi_uuid"] == a["vdi_uuid"]
    b = plugin(xapi, dest, "connect_volume", connection_info=iscsi_ci(peers, iqn, 2))
    d = plugin(xapi, dest, "disconnect_volume", connection_info=iscsi_ci(peers, iqn, 1))
    assert "kept" in d["note"]
    d = plugin(xapi, dest, "disconnect_volume", sr_uuid=b["sr_uuid"], vdi_uuid=b["vdi_uuid"])
    assert d["note"] == "SR forgotten"
    assert state(ppool) == before
    d = plugin(xapi, dest, "disconnect_volume", connection_info=iscsi_ci(peers, iqn, 1))
    assert "not connected" in d["note"]


def test_a_connected_volume_keeps_its_sr_through_a_detach(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2))
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    plugin(xapi, host, "connect_volume", connection_info=iscsi_ci(peers, iqn, 2))
    out = plugin(
        xapi, host, "attach_volume", connection_info=iscsi_ci(peers, iqn, 1), vm_uuid=vm_uuid
    )
    d = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert "kept" in d["note"]
    plugin(xapi, host, "disconnect_volume", connection_info=iscsi_ci(peers, iqn, 2))
    assert state(ppool) == before


def test_list_drivers_and_version(ppool):
    xapi = ppool.session().xenapi
    out = plugin(xapi, ppool.host(0), "list_drivers")
    types = [d["driver_volume_type"] for d in out["drivers"]]
    assert types == [
        "cephfs",
        "fibre_channel",
        "file",
        "glusterfs",
        "iscsi",
        "nfs",
        "smb",
        "smbfs",
        "xenapinfs",
        "xensm",
    ]
    assert out["failed"] == []
    v = plugin(xapi, ppool.host(1), "version")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "dom0_plugins/etc/xapi.d/plugins/xenvol_dom0/VERSION")) as fh:
        assert v == {
            "plugin": "xenvol",
            "version": fh.read().strip(),
            "api_level": API_LEVEL,
            "wait_limit": 60,
            "config": {"state": "ok"},
        }


def test_log_lines_also_reach_syslog(ppool):
    """Each log line also goes to dom0's syslog socket (so a pool's remote syslog has them);
    here a datagram socket under the host's /var stands for /dev/log."""
    import json as _json
    import socket

    xapi = ppool.session().xenapi
    host = ppool.host(1)
    path = os.path.join(host.root, "var/run/test-syslog")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    conf = os.path.join(host.root, "etc/xenvol/xenvol.conf")
    try:
        with open(conf, "w") as fh:
            _json.dump({"syslog_socket": "/var/run/test-syslog"}, fh)
        plugin(xapi, host, "list_drivers")  # version logs nothing (its cold start is bare)
        line = sock.recv(4096).decode()
        assert line.startswith("<30>xenvol[") and "call list_drivers" in line  # daemon.info
    finally:
        os.unlink(conf)
        sock.close()
        os.unlink(path)
