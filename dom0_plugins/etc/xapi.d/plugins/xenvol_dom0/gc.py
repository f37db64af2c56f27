"""gc: what xenvol left behind that nothing uses, listed, and removed when asked.

Only objects xenvol made and marked are considered: SRs marked xenvol-introduced, PBDs
marked xenvol-pbd-<host>, VBDs marked xenvol, secrets tagged xenvol, the xenvol-lease and
xenvol-connected-<host> keys, and this host's journals. Local items are this host's; the
pool-wide ones are looked at by the one host asked to (the client asks the master).

Nothing is removed on the strength of a read a concurrent call can make stale: each removal
checks again what it stands on (an SR's users under its lease, a VBD's VM by its ref, a
host's absence by its uuid), and an item is reported done only when gc did it; else it says
why not (`skipped`) or what failed (`error`). gc --apply works as an operation with a
journal of its own, so that the SR leases it takes name an operation others can check."""

import os
import time

import XenAPI

from . import call as call_mod
from . import journal, log, recovery, settings, storage
from . import lease as leases
from . import vbd as vbds
from .errors import XenvolError, vanished
from .lease import Lease
from .marks import HOST, MADE_BY, OP, SEEN, TTL

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: F401

    from .call import Call  # noqa: F401

# A client-made secret's lifetime (other_config xenvol-ttl, seconds), measured from when gc
# first saw it (xenvol-seen: "<host uuid> <boot id> <seconds since that boot>"), by the clock
# of the host that stamped it: no two machines' clocks are ever compared.
# For a secret with no TTL of its own (a client before it said): the longest a call waits,
# plus this.
CLIENT_SECRET_GRACE = 300


class Sweep:
    def __init__(self, call, apply):
        # type: (Call, bool) -> None
        self.call = call
        self.apply = apply
        self.items = []  # type: List[Dict[str, Any]]

    def found(self, kind, ident, why, action):
        # type: (str, str, str, str) -> Dict[str, Any]
        item = {"kind": kind, "id": ident, "why": why, "action": action}
        self.items.append(item)
        return item

    def act(self, item, fn, *args):
        # type: (Dict[str, Any], Callable[..., Optional[str]], *Any) -> None
        """fn does the item's action and returns None, or returns why it did not (what it
        stood on no longer holds)."""
        if not self.apply:
            return
        try:
            skipped = fn(*args)
        except Exception as e:  # report it and go on with the rest
            item["done"] = False
            item["error"] = "%s: %s" % (type(e).__name__, e)
            return
        item["done"] = skipped is None
        if skipped is None:
            log.step("gc: %s %s" % (item["action"], item["id"]))
        else:
            item["skipped"] = skipped


def run(call, apply, pool_wide):
    # type: (Call, bool, bool) -> Dict[str, Any]
    sweep = Sweep(call, apply)
    if apply:
        with call_mod.own_journal(call):
            _sweep(sweep, pool_wide)
    else:
        _sweep(sweep, pool_wide)
    return {"host_uuid": call.host_uuid, "applied": apply, "items": sweep.items}


def _sweep(sweep, pool_wide):
    # type: (Sweep, bool) -> None
    _local(sweep)
    if pool_wide:
        _pool(sweep)


def _local(sweep):
    # type: (Sweep) -> None
    for path in journal.journals():
        if journal.dead(path):
            try:
                d = journal.Record(path).describe()
            except (journal.Damaged, OSError):
                continue  # recovered, or set aside, meanwhile
            item = sweep.found(
                "journal",
                d["op_id"],
                "operation %s (%s) is dead with %d step(s) "
                "left" % (d["op_id"], d["fn"], len(d["left"])),
                "roll back or finish it",
            )
            item["left"] = d["left"]
            sweep.act(item, _recover, sweep.call, path)
    for d in journal.damaged():
        item = sweep.found(
            "damaged",
            d["file"],
            "a %s that cannot be read (%s), set aside: never run" % (d["kind"], d["problem"]),
            "none: kept for the operator to check what it describes, then remove",
        )
        item.update(op_id=d["op_id"], fn=d["fn"], describes=d["describes"])
    for path in journal.orphan_temp_files():
        item = sweep.found(
            "journal-file",
            os.path.basename(path),
            "left by a process killed before it began",
            "remove the file",
        )
        sweep.act(item, os.unlink, path)


def _recover(call, path):
    # type: (Call, str) -> Optional[str]
    outcome = recovery.recover(call, path, force=True)
    if outcome == "failed":
        raise RuntimeError("some steps could not be undone; see /var/log/xenvol.log")
    if outcome == "damaged":
        raise RuntimeError("it cannot be read: set aside, nothing run (see kind damaged)")
    if outcome == "gone":
        return "recovered by another call meanwhile"
    if outcome == "alive":
        return "its operation is alive"
    return None


def _pool(sweep):
    # type: (Sweep) -> None
    call = sweep.call
    x = call.x
    hosts = dict((rec["uuid"], ref) for ref, rec in x.host.get_all_records().items())
    # VBDs xenvol made whose VM is gone (xapi destroys a VM's VBDs with it; kept as a net).
    # The VBDs read before the VMs, so that a VM made meanwhile with a VBD is not missed; and
    # a VM ref is never reused, so one that is invalid now is gone for good.
    marked = dict(
        (ref, rec)
        for ref, rec in x.VBD.get_all_records().items()
        if rec["other_config"].get(vbds.MARK) == "true"
    )
    vms = set(x.VM.get_all())
    for ref, rec in sorted(marked.items()):
        if rec["VM"] not in vms:
            item = sweep.found("vbd", rec["uuid"], "its VM is gone", "destroy the VBD")
            sweep.act(item, _destroy_vbd, call, ref, rec["VM"])
    # SRs before VDIs: every VDI of an SR read is in the VDIs read after (or destroyed).
    srs = x.SR.get_all_records()
    vdis = x.VDI.get_all_records()
    # Connection claims of hosts that left the pool.
    for ref, rec in sorted(vdis.items()):
        for key in sorted(rec["other_config"]):
            if key.startswith(storage.CONNECTED) and key[len(storage.CONNECTED) :] not in hosts:
                host_uuid = key[len(storage.CONNECTED) :]
                item = sweep.found(
                    "claim",
                    "%s %s" % (rec["uuid"], key),
                    "host %s left the pool" % host_uuid,
                    "drop the connection claim",
                )
                sweep.act(item, _drop_claim, call, ref, key, host_uuid)
    for sr, rec in sorted(srs.items(), key=lambda kv: kv[1]["uuid"]):
        other = rec["other_config"]
        holder = other.get(leases.KEY)
        if holder:
            if not _holder_dead(call, holder, sweep.apply):
                continue  # an operation is at work on it
            item = sweep.found(
                "lease", rec["uuid"], "held by a dead operation (%s)" % holder, "break the lease"
            )
            sweep.act(item, _break, call, sr, holder)
        marks = [k for k in other if k.startswith(storage.PBD_MARK)]
        if other.get(storage.INTRODUCED) != "true" and not marks:
            continue
        if _in_use(sr, vdis, hosts):
            continue
        if other.get(storage.INTRODUCED) == "true":
            item = sweep.found(
                "sr",
                rec["uuid"],
                "introduced by xenvol; no VBD and no connection uses it",
                "unplug its PBDs and forget the SR",
            )
            sweep.act(item, _release, call, sr, None)
        else:
            owners = [k[len(storage.PBD_MARK) :] for k in marks]
            item = sweep.found(
                "pbd",
                rec["uuid"],
                "PBD(s) xenvol made on host(s) %s of an SR "
                "it did not introduce; nothing uses them" % ", ".join(owners),
                "unplug and destroy those PBDs",
            )
            sweep.act(item, _release, call, sr, [hosts.get(h) for h in owners])
    _secrets(sweep, hosts)


def _destroy_vbd(call, vbd, vm):
    # type: (Call, str, str) -> Optional[str]
    try:
        call.x.VM.get_uuid(vm)
        return "its VM exists"
    except XenAPI.Failure as f:
        if not vanished(f):
            raise
    return _destroy(call.x.VBD.destroy, vbd)


def _drop_claim(call, vdi, key, host_uuid):
    # type: (Call, str, str, str) -> Optional[str]
    if call.find("host", host_uuid) is not None:
        return "host %s is in the pool" % host_uuid
    try:
        if key not in call.x.VDI.get_other_config(vdi):
            return "dropped meanwhile"
        call.x.VDI.remove_from_other_config(vdi, key)
    except XenAPI.Failure as f:
        if vanished(f):
            return "the VDI is gone"
        raise
    return None


def _break(call, sr, holder):
    # type: (Call, str, str) -> Optional[str]
    try:
        if call.x.SR.get_other_config(sr).get(leases.KEY) != holder:
            return "the lease changed meanwhile"
        call.x.SR.remove_from_other_config(sr, leases.KEY)
    except XenAPI.Failure as f:
        if vanished(f):
            return "the SR is gone"
        raise
    return None


def _in_use(sr, vdis, hosts):
    # type: (str, Dict[str, Dict[str, Any]], Dict[str, str]) -> bool
    for rec in vdis.values():
        if rec["SR"] != sr:
            continue
        if rec["VBDs"]:
            return True
        if any(
            k.startswith(storage.CONNECTED) and k[len(storage.CONNECTED) :] in hosts
            for k in rec["other_config"]
        ):
            return True
    return False


def _release(call, sr, pbd_hosts):
    # type: (Call, str, Optional[List[Optional[str]]]) -> Optional[str]
    """Under the SR's lease, and only if still unused: forget it, or drop xenvol's PBDs."""
    try:
        held = Lease(call, sr).acquire()
    except XenvolError as e:
        if vanished(e):
            return "the SR is gone"
        raise
    try:
        users = storage.users(call, sr)
        if users:
            return "in use now by %d volume(s)" % len(users)
        if pbd_hosts is None:
            for pbd in call.x.SR.get_PBDs(sr):
                if call.x.PBD.get_currently_attached(pbd):
                    call.x.PBD.unplug(pbd)
            call.x.SR.forget(sr)
            held.held = False  # gone with the SR
            return None
        missing = [h for h in pbd_hosts if h is None]
        for host in pbd_hosts:
            if host is None:
                continue
            pbd = call.host_pbd(sr, host)
            if pbd is not None:
                if call.x.PBD.get_currently_attached(pbd):
                    call.x.PBD.unplug(pbd)
                call.x.PBD.destroy(pbd)
            storage.remove_mark(call, sr, storage.PBD_MARK + call.x.host.get_uuid(host))
        if missing:
            return "%d of those hosts left the pool; their marks stay" % len(missing)
        return None
    finally:
        held.release()


def _holder_dead(call, holder, apply):
    # type: (Call, str, bool) -> bool
    """Whether a lease's operation is dead; a dry run recovers nothing to find out."""
    named = leases.parse(holder)
    if named is None:
        return leases.age(holder) > float(call.settings["lease_stale_after"])
    host_uuid, op_id = named
    if host_uuid == call.host_uuid:
        path = journal.path_of(op_id)
        return not os.path.exists(path) or journal.dead(path)
    return leases.operation_alive(call, host_uuid, op_id, probe=not apply) is False


# ---------------------------------------------------------------------- secrets
def _secrets(sweep, hosts):
    # type: (Sweep, Dict[str, str]) -> None
    call = sweep.call
    x = call.x
    # Secrets before PBDs: a PBD made after the PBDs are read owns a secret made after too.
    found = x.secret.get_all_records()
    pbd_secrets = set()
    for rec in x.PBD.get_all_records().values():
        pbd_secrets.update(rec["device_config"].values())
    for ref, rec in sorted(found.items()):
        if rec["uuid"] in pbd_secrets:
            continue
        why = _orphan_secret(sweep, ref, rec, hosts)
        if why:
            item = sweep.found("secret", rec["uuid"], why, "destroy the secret")
            sweep.act(item, _destroy_secret, call, ref)


def _destroy_secret(call, ref):
    # type: (Call, str) -> Optional[str]
    return _destroy(call.x.secret.destroy, ref)


def _destroy(destroy, ref):
    # type: (Callable[[str], Any], str) -> Optional[str]
    """Destroy `ref`; None when done, why not when something else destroyed it first."""
    try:
        destroy(ref)
    except XenAPI.Failure as f:
        if vanished(f):
            return "destroyed meanwhile"
        raise
    return None


def _orphan_secret(sweep, ref, rec, hosts):
    # type: (Sweep, str, Dict[str, Any], Dict[str, str]) -> Optional[str]
    call = sweep.call
    other = rec["other_config"]
    made_by = other.get(MADE_BY)
    op_id = other.get(OP, "")
    if made_by == "client":
        ttl = _ttl(call, other.get(TTL))
        seen = _seen_for(call, ref, other.get(SEEN), sweep.apply)
        if seen < ttl or _alive_here(op_id):
            return None
        return "made by a xenvol client for operation %s, unused for %d s or more" % (op_id, ttl)
    if made_by == "plugin":
        host = other.get(HOST, "")
        if host == call.host_uuid:
            alive = _alive_here(op_id)
        elif host not in hosts:
            alive = False
        else:
            alive = leases.operation_alive(call, host, op_id, probe=True) is not False
        if not alive:
            return "made by the plugin for operation %s, which is over" % op_id
    return None


def _alive_here(op_id):
    # type: (str) -> bool
    if not journal.valid_op_id(op_id):
        return False
    path = journal.path_of(op_id)
    return os.path.exists(path) and not journal.dead(path)


def _ttl(call, given):
    # type: (Call, Optional[str]) -> float
    try:
        ttl = float(given or "")
        if 0 <= ttl <= 7 * 86400:
            return ttl
    except ValueError:
        pass
    return settings.wait_limit(call.settings) + CLIENT_SECRET_GRACE


def _seen_for(call, ref, stamp, apply):
    # type: (Call, str, Optional[str], bool) -> float
    """How long ago gc first saw the secret, by this host's clock since its boot
    (CLOCK_MONOTONIC: no change of the time of day moves it); 0 the first time (then, with
    apply, stamped), or when another host (or this one before a reboot) stamped it."""
    here = "%s %s" % (call.host_uuid, journal.boot_id())
    now = "%.3f" % time.monotonic()
    where, _, when = (stamp or "").rpartition(" ")
    if where == here:
        try:
            return max(0.0, float(now) - float(when))
        except ValueError:
            pass
    if apply:
        try:
            if stamp is not None:
                call.x.secret.remove_from_other_config(ref, SEEN)
            call.x.secret.add_to_other_config(ref, SEEN, "%s %s" % (here, now))
        except XenAPI.Failure:
            pass  # stamped by a concurrent gc, or gone: seen again next time
    return 0.0
