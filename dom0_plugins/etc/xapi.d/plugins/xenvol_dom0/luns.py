"""Raw LUN claims: how a LUN-per-VDI SR's LUN (sm HBASR, and the xensm types that map a LUN
per volume) becomes usable, and goes back. docs/architecture.md, "Raw LUN claims", says why
it is done this way."""

import os

import XenAPI

from . import journal, log
from .errors import VDI_NOT_FOUND, XenvolError, from_xapi
from .marks import CONNECTED, LUN_CLAIM
from .undo import compensation

# sm XE_SR_ERRORCODES.xml SRNoSpace: LUNperVDI.RAWVDI.create found no unmanaged LUN that fits.
NO_SPACE = "SR_BACKEND_FAILURE_44"


def claim_lun(call, sr, vdi, steps):
    """Make a raw LUN usable: xapi refuses every VBD operation on an unmanaged VDI
    (VDI_NOT_MANAGED), and the LUN-per-VDI SMs (sm HBASR) leave the LUNs a scan finds
    unmanaged. VDI.set_managed is refused to every session but the SM's own (xen-api
    message_forwarding.ml: Sm.assert_session_has_internal_sr_access), so the LUN is claimed
    the way xapi allows: VDI.create on its SR, where sm's LUNperVDI.RAWVDI.create claims the
    smallest unmanaged LUN of at least the size asked (and returns that LUN's VDI). Asked for
    exactly the wanted LUN's size, the SM takes it or another unmanaged LUN of the same size:
    each claimed LUN is checked by its SCSI id, a wrong one is held (so the SM does not offer
    it again) and released (VDI.destroy: RAWVDI.delete) before this returns. Every claim carries
    LUN_CLAIM = <host>/<op id>, set by the VDI.create itself, and the journal names that mark
    before the first VDI.create: a call killed at any point has its claims released by its
    rollback or recovery. The claims of one SR on this host run one at a time. Returns the
    VDI to use (the wanted LUN's, as xapi found it again)."""
    x = call.x
    rec = call.records.get(vdi) or call.do("reading the VDI", x.VDI.get_record, vdi)
    if rec["managed"] and LUN_CLAIM not in rec["other_config"]:
        return vdi  # usable, and no claim of ours in flight on it
    want = rec["sm_config"].get("SCSIid")
    if not want:
        return vdi  # not a raw LUN: xapi says what it thinks of it at the VBD
    sr_uuid = call.uuids.get(sr) or x.SR.get_uuid(sr)
    mark = "%s/%s" % (call.host_uuid, call.op_id)
    with call.lock("lun-claims-" + sr_uuid):
        # Again, now that no other claim of this SR is under way here (one that held this LUN
        # for a moment has released it: then it is gone until a rescan, and the call starts
        # again).
        rec = call.records[vdi] = call.do("reading the VDI", x.VDI.get_record, vdi)
        if rec["managed"]:
            return vdi
        steps.will("claim LUN %s" % want, "release_lun_claims", sr_uuid=sr_uuid, mark=mark)
        log.step("claiming the LUN with VDI.create on its SR", scsi_id=want)
        wrong = []
        try:
            while True:  # each turn claims another LUN: at most as many as the SR shows
                try:
                    got = x.VDI.create(_claim_record(sr, rec, mark))
                except XenAPI.Failure as f:
                    if f.details[0] != NO_SPACE:
                        raise from_xapi(f, "claiming the LUN") from None
                    return _not_claimable(call, vdi, want)
                got_rec = call.records[got] = call.do(
                    "reading the claimed LUN's VDI", x.VDI.get_record, got
                )
                if got_rec["sm_config"].get("SCSIid") == want:
                    return _keep_other_config(call, got, rec, got_rec)
                log.step(
                    "the SM claimed another LUN of that size; holding it and asking again",
                    scsi_id=got_rec["sm_config"].get("SCSIid"),
                )
                wrong.append(got)
        finally:
            for other in wrong:
                _release_lun(call, other)


def _keep_other_config(call, vdi, before, now):
    """xapi_vdi.ml create sets the claimed record's other_config to the one given: what the
    LUN's record held before comes back, with the claim's mark."""
    if before["other_config"]:
        merged = dict(before["other_config"], **now["other_config"])
        call.do("restoring the LUN's other_config", call.x.VDI.set_other_config, vdi, merged)
        now["other_config"] = merged
    return vdi


def _claim_record(sr, rec, mark):
    return {
        "SR": sr,
        "virtual_size": rec["virtual_size"],
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {LUN_CLAIM: mark},
        "name_label": rec["name_label"],
        "name_description": rec["name_description"],
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def _not_claimable(call, vdi, want):
    """The SM found no unmanaged LUN of that size any more: the wanted one was claimed
    meanwhile (by something else than xenvol: then it is usable), or it went."""
    try:
        rec = call.x.VDI.get_record(vdi)
    except XenAPI.Failure as f:
        raise from_xapi(f, "reading the LUN's VDI") from None
    if rec["managed"]:
        return vdi
    raise XenvolError(
        VDI_NOT_FOUND,
        "the LUN with SCSI id %s is shown unmanaged, but its SR's SM cannot claim it" % want,
        scsi_id=want,
    )


def _release_lun(call, vdi):
    """VDI.destroy of a LUN xenvol claimed: sm's RAWVDI.delete unmanages it, xapi drops its
    record (a rescan shows the LUN again, unmanaged). A VBD plugged meanwhile keeps it."""
    try:
        call.x.VDI.destroy(vdi)
    except XenAPI.Failure as f:
        if f.details[0] not in ("HANDLE_INVALID", "VDI_IN_USE", "VDI_NOT_MANAGED"):
            raise from_xapi(f, "releasing a claimed LUN") from None


@compensation("release_lun_claims")
def release_lun_claims(call, sr_uuid, mark):
    """Undo claim_lun: the LUNs of the SR claimed under the call's mark that nothing uses."""
    sr = call.find("SR", sr_uuid)
    if sr is None:
        return  # forgotten: its records, and their claims, went with it
    with call.lock("lun-claims-" + sr_uuid):
        found = call.x.VDI.get_all_records_where('field "SR" = "%s"' % sr)
        for vdi, rec in sorted(found.items()):
            other = rec["other_config"]
            if other.get(LUN_CLAIM) != mark or not rec["managed"] or rec["VBDs"]:
                continue
            if not any(k.startswith(CONNECTED) for k in other):
                _release_lun(call, vdi)


def release_idle(call, sr_uuid, idle):
    """Release LUNs claimed for volumes detached since (finished_claim): nothing uses them."""
    if not idle:
        return
    with call.lock("lun-claims-" + sr_uuid):
        for vdi in idle:
            log.step("releasing a claimed LUN nothing uses")
            _release_lun(call, vdi)


def finished_claim(call, rec):
    """A LUN claimed by a call of this host that is over: its journal is gone (a call under
    way, or dead and not yet recovered, keeps its journal and releases its own claims)."""
    host_uuid, _, op_id = rec["other_config"].get(LUN_CLAIM, "").partition("/")
    if host_uuid != call.host_uuid or not journal.valid_op_id(op_id) or op_id == call.op_id:
        return False
    return not os.path.exists(journal.path_of(op_id))
