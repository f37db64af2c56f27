"""The fibre_channel driver end to end over the simulator's FC fabric (sm HBASR, LUNperVDI)."""

import threading
import uuid

import pytest

from conftest import PluginError, plugin, state
from drivercheck import concurrent, fault_at_every_call, idempotent, placed, refused

T1, T2 = "50:0a:09:82:99:1b:8d:c5", "500a0982891b8dc5"
BAD = "XENVOL_INVALID_CONNECTION_INFO"


def lun(pool, target, number, size=1 << 30, zone_hosts=None, initiators=None):
    """A LUN with a fresh SCSI id, zoned to every port of the given hosts (default: all)."""
    scsi_id = "3600a0980%s" % uuid.uuid4().hex[:20]
    pool.admin.fc_lun(target, number, scsi_id, str(size), *([initiators] if initiators else []))
    ports = pool.admin.fc_fabric()
    for h in zone_hosts or [pool.host(i) for i in range(3)]:
        for wwpn in ports[h.uuid]:
            pool.admin.fc_zone(wwpn, target)
    return scsi_id


def ci(lun_no, **data):
    base = {
        "target_discovered": True,
        "target_wwn": [T1, T2],
        "target_lun": lun_no,
        "access_mode": "rw",
        "volume_id": "fc-%d" % lun_no,
    }
    base.update(data)
    return {"driver_volume_type": "fibre_channel", "data": base}


@pytest.mark.slow
def test_attach_finds_the_lun_by_wwn_and_lun_and_claims_it(ppool):
    xapi = ppool.session().xenapi
    scsi_id = lun(ppool, T1, 5)
    lun(ppool, T1, 6)
    before = state(ppool)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    out = plugin(xapi, host, "attach_volume", connection_info=ci(5), vm_uuid=vm_uuid)
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    rec = xapi.VDI.get_record(vdi)
    assert rec["sm_config"]["SCSIid"] == scsi_id and rec["managed"] is True
    assert xapi.VBD.get_other_config(xapi.VBD.get_by_uuid(out["vbd_uuid"]))["backend-kind"] == "vbd"
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    assert xapi.SR.get_type(sr) == "hba" and xapi.SR.get_shared(sr) is False
    assert [xapi.PBD.get_host(p) for p in xapi.SR.get_PBDs(sr)] == [host.ref]
    # the other LUN (of the same size: the SM may have claimed it first, and the plugin then
    # released it, its record gone until a scan) stays unmanaged
    xapi.SR.scan(sr)
    others = [v for v in xapi.SR.get_VDIs(sr) if v != vdi]
    assert [xapi.VDI.get_managed(v) for v in others] == [False]
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


@pytest.mark.slow
def test_target_wwns_luns_lists_and_a_lun_above_255(ppool):
    scsi_id = lun(ppool, T2, 300)
    info = {
        "driver_volume_type": "fibre_channel",
        "data": {"target_wwns": ["21:00:00:24:ff:00:00:01", T2], "target_luns": [300, 300]},
    }
    out = idempotent(ppool, info)
    assert out["vdi_uuid"]
    xapi = ppool.session().xenapi
    assert scsi_id  # the VDI is gone with the SR; its uuid was md5(SCSIid)
    import hashlib

    h = hashlib.md5(scsi_id.encode()).hexdigest()
    assert out["vdi_uuid"] == "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    assert xapi.VDI.get_all_records() is not None


def test_initiator_target_map_restricts_the_paths(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    lun(ppool, T1, 9)
    port = ppool.admin.fc_fabric()[host.uuid][0]
    before = state(ppool)
    wrong = ci(9, initiator_target_map={port: [T2]})
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=wrong, vm_uuid=vm_uuid)
    assert e.value.code == "XENVOL_VDI_NOT_FOUND" and "data.target_lun" in e.value.message
    assert state(ppool) == before
    right = ci(9, initiator_target_map={port: [T1, T2]})
    out = plugin(xapi, host, "attach_volume", connection_info=right, vm_uuid=vm_uuid)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_unzoned_or_masked_lun_is_not_found_and_changes_nothing(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    others = [ppool.host(i) for i in range(3) if ppool.host(i).uuid != host.uuid]
    lun(ppool, T1, 11, zone_hosts=others)
    lun(ppool, T2, 12, initiators=["10:00:00:00:c9:ff:00:01"])  # masked to another initiator
    before = state(ppool)
    for n in (11, 12):
        with pytest.raises(PluginError) as e:
            plugin(xapi, host, "attach_volume", connection_info=ci(n), vm_uuid=vm_uuid)
        assert e.value.code == "XENVOL_VDI_NOT_FOUND"
        assert state(ppool) == before


def test_multipath_host_sees_both_paths(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    xapi.host.add_to_other_config(host.ref, "multipathing", "true")
    scsi_id = lun(ppool, T1, 4)
    out = plugin(xapi, host, "attach_volume", connection_info=ci(4), vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    oc = xapi.PBD.get_other_config(xapi.SR.get_PBDs(sr)[0])
    assert oc["multipathed"] == "true" and oc["mpath-" + scsi_id] == "[2, 2]"
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    xapi.host.remove_from_other_config(host.ref, "multipathing")


@pytest.mark.slow
def test_fault_at_every_xapi_call(ppool):
    lun(ppool, T1, 2)
    fault_at_every_call(ppool, ci(2))


@pytest.mark.slow
def test_attach_while_the_fabric_rescans(ppool):
    """The driver reads the host's sysfs while rescans (xapi's background scans run them at
    any time) add and remove another LUN, whose entries vanish under the reader: each attach
    still finds its LUN, and leaves nothing behind."""
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    lun(ppool, T1, 7, zone_hosts=[host])
    before = state(ppool)
    fabric = ppool.sim.sm.driver("hba").fabric
    stop = threading.Event()

    def churn():
        while not stop.wait(0.002):
            fabric.add_lun(T1, 1, "3600a0980" + "c" * 20, 1 << 20)
            fabric.rescan(host)
            fabric.remove_lun(T1, 1)
            fabric.rescan(host)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(3):
            out = plugin(xapi, host, "attach_volume", connection_info=ci(7), vm_uuid=vm_uuid)
            plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    finally:
        stop.set()
        t.join()
    assert state(ppool) == before


@pytest.mark.slow
def test_concurrent_attaches_share_the_host_sr(ppool):
    for n in (21, 22, 23):
        lun(ppool, T1, n)
    concurrent(ppool, [("vm-1", ci(n)) for n in (21, 22, 23)])


@pytest.mark.parametrize(
    "data,field",
    [
        ({"target_wwn": "not-a-wwn"}, "data.target_wwn[0]"),
        ({"target_wwn": ["500a0982991b8dc5", "zz"]}, "data.target_wwn[1]"),
        ({"target_wwn": []}, "data.target_wwn"),
        ({"target_wwn": {"a": 1}}, "data.target_wwn"),
        ({"target_lun": -1}, "data.target_lun"),
        ({"target_lun": "1; reboot"}, "data.target_lun"),
        ({"target_lun": 16384}, "data.target_lun"),
        ({"target_lun": None}, "data.target_lun"),
        (
            {"target_wwn": None, "target_wwns": [T1, T2], "target_luns": [1, 1, 1]},
            "data.target_luns",
        ),
        ({"target_wwn": None, "target_wwns": [T1, T2], "target_luns": [2, 3]}, "data.target_lun"),
        ({"initiator_target_map": ["x"]}, "data.initiator_target_map"),
        ({"initiator_target_map": {"nope": [T1]}}, "data.initiator_target_map"),
        ({"initiator_target_map": {"10000000c9000001": "zz"}}, "data.initiator_target_map"),
        ({"access_mode": "rwx"}, "data.access_mode"),
        ({"volume_id": "x" * 200}, "data.volume_id"),
    ],
)
def test_hostile_input_is_refused_naming_the_field(ppool, data, field):
    d = {"target_wwn": T1, "target_lun": 1}
    d.update(data)
    d = dict((k, v) for k, v in d.items() if v is not None)
    refused(ppool, {"driver_volume_type": "fibre_channel", "data": d}, field, code=BAD)
