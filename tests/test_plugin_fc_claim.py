"""fibre_channel claims a raw LUN the way xapi allows (issue 20): VDI.create on the host's hba
SR (sm LUNperVDI.RAWVDI.create picks the smallest unmanaged LUN that fits), the claimed LUN
checked by SCSI id, any other LUN claimed on the way released, against a simulator that
refuses VDI.set_managed to every session but the SM's."""

import json

import pytest

from conftest import PluginError, plugin, state
from drivercheck import placed
from killcheck import journals
from test_plugin_fc import T1, ci

SIZE = 1 << 30


def same_size_luns(pool, numbers, wanted):
    """LUNs of one size on T1, zoned to every host; the wanted one's SCSI id sorts last (the
    SR lists LUNs in that order, and the SM takes the first of equal sizes): every other LUN
    is offered before it. Returns {number: scsi id}."""
    ids = {}
    for n in numbers:
        ids[n] = "3600a0980%s%02d" % ("f" * 16 if n == wanted else "0" * 16, n)
        pool.admin.fc_lun(T1, n, ids[n], str(SIZE))
    ports = pool.admin.fc_fabric()
    for h in pool.sim.hosts:
        for wwpn in ports[h.uuid]:
            pool.admin.fc_zone(wwpn, T1)
    return ids


def managed(xapi, sr):
    """{SCSI id: managed} of the SR's LUNs, after a scan (a released LUN's record comes back)."""
    xapi.SR.scan(sr)
    return dict(
        (r["sm_config"]["SCSIid"], r["managed"])
        for r in xapi.VDI.get_all_records_where('field "SR" = "%s"' % sr).values()
    )


def luns_state(pool):
    """The pool's state, but for the refs of the SRs' VDIs: a LUN released (its record
    destroyed by VDI.destroy) and scanned again has the same uuid and fields, another ref."""
    snap = state(pool)
    for rec in snap["SR"].values():
        rec.pop("VDIs")
    return snap


def test_set_managed_is_the_sms_alone_and_the_attach_still_claims(ppool):
    xapi = ppool.session().xenapi
    ids = same_size_luns(ppool, (1, 2, 3, 4), wanted=3)
    before = state(ppool)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    ppool.admin.clear()
    out = plugin(xapi, host, "attach_volume", connection_info=ci(3), vm_uuid=vm_uuid)
    counts = ppool.admin.counts()
    assert "VDI.set_managed" not in counts
    # three other LUNs of that size were offered first, each held, then released
    assert counts["VDI.create"]["plugin"] == 4 and counts["VDI.destroy"]["plugin"] == 3
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    rec = xapi.VDI.get_record(vdi)
    assert rec["sm_config"]["SCSIid"] == ids[3] and rec["managed"] is True
    assert rec["other_config"]["xenvol-lun-claim"].startswith(host.uuid + "/")
    assert out["plugged"]
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    assert managed(xapi, sr) == dict((ids[n], n == 3) for n in ids)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_detach_releases_the_lun_when_the_sr_stays(ppool):
    xapi = ppool.session().xenapi
    ids = same_size_luns(ppool, (5, 6), wanted=6)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    a = plugin(xapi, host, "attach_volume", connection_info=ci(5), vm_uuid=vm_uuid)
    b = plugin(xapi, host, "attach_volume", connection_info=ci(6), vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(a["sr_uuid"])
    assert managed(xapi, sr) == {ids[5]: True, ids[6]: True}
    out = plugin(xapi, host, "detach_volume", vbd_uuid=a["vbd_uuid"])
    assert "kept" in out["note"]
    # LUN 5 goes back to the array's pool of unclaimed LUNs; LUN 6 stays claimed and attached
    assert managed(xapi, sr) == {ids[5]: False, ids[6]: True}
    vbd = xapi.VBD.get_by_uuid(b["vbd_uuid"])
    assert xapi.VBD.get_currently_attached(vbd)
    plugin(xapi, host, "detach_volume", vbd_uuid=b["vbd_uuid"])
    assert xapi.SR.get_all_records_where('field "uuid" = "%s"' % a["sr_uuid"]) == {}


def test_a_second_attach_of_a_claimed_lun_claims_nothing(ppool):
    xapi = ppool.session().xenapi
    same_size_luns(ppool, (7, 8), wanted=8)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    info = ci(8, access_mode="rw")
    before = state(ppool)
    con = plugin(xapi, host, "connect_volume", connection_info=info)
    ppool.admin.clear()
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert out["vdi_uuid"] == con["vdi_uuid"]
    assert "VDI.create" not in ppool.admin.counts()
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    plugin(xapi, host, "disconnect_volume", connection_info=info)
    assert state(ppool) == before


@pytest.mark.parametrize(
    "method,nth",
    [("VDI.create", 2), ("VDI.get_record", 3), ("VDI.destroy", 1), ("VBD.create", 1)],
)
def test_a_failure_while_or_after_claiming_releases_every_lun_it_claimed(ppool, method, nth):
    xapi = ppool.session().xenapi
    ids = same_size_luns(ppool, (1, 2, 3), wanted=3)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    keep = plugin(xapi, host, "attach_volume", connection_info=ci(1), vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(keep["sr_uuid"])
    managed(xapi, sr)
    before = luns_state(ppool)
    ppool.admin.clear()
    ppool.admin.inject_fault(
        method, ["INTERNAL_ERROR", "injected"], {"nth": nth, "caller": "plugin"}
    )
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=ci(3), vm_uuid=vm_uuid)
    assert "injected" in e.value.message and "rollback_incomplete" not in e.value.details
    assert managed(xapi, sr) == {ids[1]: True, ids[2]: False, ids[3]: False}
    assert luns_state(ppool) == before
    ppool.admin.clear()
    plugin(xapi, host, "detach_volume", vbd_uuid=keep["vbd_uuid"])


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_call_killed_while_claiming_leaves_no_lun_claimed(ppool, when):
    xapi = ppool.session().xenapi
    ids = same_size_luns(ppool, (1, 2, 3), wanted=3)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    keep = plugin(xapi, host, "attach_volume", connection_info=ci(1), vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(keep["sr_uuid"])
    for nth in (1, 2):
        ppool.admin.clear()
        ppool.admin.kill_plugin("VDI.create", {"nth": nth, "when": when, "host": host.uuid})
        with pytest.raises(PluginError):
            plugin(xapi, host, "attach_volume", connection_info=ci(3), vm_uuid=vm_uuid)
        assert journals(host)  # the dead call's journal names its claim
        ppool.admin.clear()
        # the next changing call on the host recovers it, then does its own work
        out = plugin(xapi, host, "attach_volume", connection_info=ci(3), vm_uuid=vm_uuid)
        assert managed(xapi, sr) == {ids[1]: True, ids[2]: False, ids[3]: True}
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
        assert managed(xapi, sr) == {ids[1]: True, ids[2]: False, ids[3]: False}
    plugin(xapi, host, "detach_volume", vbd_uuid=keep["vbd_uuid"])


def test_a_lun_the_sm_cannot_claim_fails_naming_its_scsi_id(ppool):
    """SRNoSpace while the wanted LUN is still unmanaged: nothing is claimed, the error
    names the LUN."""
    xapi = ppool.session().xenapi
    same_size_luns(ppool, (4,), wanted=4)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    ppool.admin.inject_fault(
        "VDI.create",
        ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""],
        {"caller": "plugin"},
    )
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=ci(4), vm_uuid=vm_uuid)
    assert e.value.code == "XENVOL_VDI_NOT_FOUND" and "cannot claim" in e.value.message
    ppool.admin.clear()
    details = json.dumps(e.value.details)
    assert "scsi_id" in details
