"""gc: what xenvol left behind that nothing uses, listed, and removed when asked.

Only objects xenvol made and marked are considered: SRs marked xenvol-introduced, PBDs
marked xenvol-pbd-<host>, VBDs marked xenvol, secrets tagged xenvol, the xenvol-lease and
xenvol-connected-<host> keys, and this host's journals. Local items are this host's; the
pool-wide ones are looked at by the one host asked to (the client asks the master)."""

import os
import time

from . import journal, log, storage
from . import lease as leases
from . import vbd as vbds
from .lease import Lease

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional  # noqa: F401

    from .call import Call  # noqa: F401

NULL = "OpaqueRef:NULL"


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
        # type: (Dict[str, Any], Callable[..., Any], *Any) -> None
        if not self.apply:
            return
        try:
            fn(*args)
            item["done"] = True
            log.step("gc: %s %s" % (item["action"], item["id"]))
        except Exception as e:  # report it and go on with the rest
            item["done"] = False
            item["error"] = "%s: %s" % (type(e).__name__, e)


def run(call, apply, pool_wide):
    # type: (Call, bool, bool) -> Dict[str, Any]
    sweep = Sweep(call, apply)
    _local(sweep)
    if pool_wide:
        _pool(sweep)
    return {"host_uuid": call.host_uuid, "applied": apply, "items": sweep.items}


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
    # type: (Call, str) -> None
    outcome = journal.recover(call, path, force=True)
    if outcome == "failed":
        raise RuntimeError("some steps could not be undone; see /var/log/xenvol.log")
    if outcome == "damaged":
        raise RuntimeError("it cannot be read: set aside, nothing run (see kind damaged)")


def _pool(sweep):
    # type: (Sweep) -> None
    call = sweep.call
    x = call.x
    hosts = dict((rec["uuid"], ref) for ref, rec in x.host.get_all_records().items())
    vms = set(x.VM.get_all())
    # VBDs xenvol made whose VM is gone (xapi destroys a VM's VBDs with it; kept as a net).
    for ref, rec in x.VBD.get_all_records().items():
        if rec["other_config"].get(vbds.MARK) == "true" and rec["VM"] not in vms:
            item = sweep.found("vbd", rec["uuid"], "its VM is gone", "destroy the VBD")
            sweep.act(item, x.VBD.destroy, ref)
    vdis = x.VDI.get_all_records()
    srs = x.SR.get_all_records()
    # Connection claims of hosts that left the pool.
    for ref, rec in vdis.items():
        for key in sorted(rec["other_config"]):
            if key.startswith(storage.CONNECTED) and key[len(storage.CONNECTED) :] not in hosts:
                item = sweep.found(
                    "claim",
                    "%s %s" % (rec["uuid"], key),
                    "host %s left the pool" % key[len(storage.CONNECTED) :],
                    "drop the connection claim",
                )
                sweep.act(item, x.VDI.remove_from_other_config, ref, key)
    for sr, rec in sorted(srs.items(), key=lambda kv: kv[1]["uuid"]):
        other = rec["other_config"]
        holder = other.get(leases.KEY)
        if holder:
            if not _holder_dead(call, holder, sweep.apply):
                continue  # an operation is at work on it
            item = sweep.found(
                "lease", rec["uuid"], "held by a dead operation (%s)" % holder, "break the lease"
            )
            sweep.act(item, leases.remove_if, call, sr, holder)
        marks = [k for k in other if k.startswith(storage.PBD_MARK)]
        if other.get(storage.INTRODUCED) != "true" and not marks:
            continue
        if _in_use(rec, vdis, hosts):
            continue
        if other.get(storage.INTRODUCED) == "true":
            item = sweep.found(
                "sr",
                rec["uuid"],
                "introduced by xenvol; no VBD and no connection uses it",
                "unplug its PBDs and forget the SR",
            )
            sweep.act(item, _release, call, sr, rec["uuid"], None)
        else:
            owners = [k[len(storage.PBD_MARK) :] for k in marks]
            item = sweep.found(
                "pbd",
                rec["uuid"],
                "PBD(s) xenvol made on host(s) %s of an SR "
                "it did not introduce; nothing uses them" % ", ".join(owners),
                "unplug and destroy those PBDs",
            )
            sweep.act(item, _release, call, sr, rec["uuid"], [hosts.get(h) for h in owners])
    now = time.time()
    pbd_secrets = set()
    for rec in x.PBD.get_all_records().values():
        pbd_secrets.update(rec["device_config"].values())
    for ref, rec in x.secret.get_all_records().items():
        why = _orphan_secret(call, rec, now, hosts)
        if why and rec["uuid"] not in pbd_secrets:
            item = sweep.found("secret", rec["uuid"], why, "destroy the secret")
            sweep.act(item, x.secret.destroy, ref)


def _in_use(sr_rec, vdis, hosts):
    # type: (Dict[str, Any], Dict[str, Dict[str, Any]], Dict[str, str]) -> bool
    for vdi in sr_rec["VDIs"]:
        rec = vdis.get(vdi)
        if rec is None:
            continue
        if rec["VBDs"]:
            return True
        if any(
            k.startswith(storage.CONNECTED) and k[len(storage.CONNECTED) :] in hosts
            for k in rec["other_config"]
        ):
            return True
    return False


def _release(call, sr, sr_uuid, pbd_hosts):
    # type: (Call, str, str, Optional[List[Optional[str]]]) -> None
    """Under the SR's lease, and only if still unused: forget it, or drop xenvol's PBDs."""
    held = Lease(call, sr).acquire()
    try:
        if storage.users(call, sr):
            return
        if pbd_hosts is None:
            for pbd in call.x.SR.get_PBDs(sr):
                if call.x.PBD.get_currently_attached(pbd):
                    call.x.PBD.unplug(pbd)
            call.x.SR.forget(sr)
            return
        for host in pbd_hosts:
            if host is None:
                continue
            pbd = call.host_pbd(sr, host)
            if pbd is not None:
                if call.x.PBD.get_currently_attached(pbd):
                    call.x.PBD.unplug(pbd)
                call.x.PBD.destroy(pbd)
            storage.remove_mark(call, sr, storage.PBD_MARK + call.x.host.get_uuid(host))
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


def _orphan_secret(call, rec, now, hosts):
    # type: (Call, Dict[str, Any], float, Dict[str, str]) -> Optional[str]
    other = rec["other_config"]
    made_by = other.get("xenvol")
    if made_by == "client":
        try:
            expires = float(other.get("xenvol-expires", "0"))
        except ValueError:
            expires = 0
        if expires < now:
            return "made by a xenvol client for operation %s, expired" % other.get("xenvol-op")
    elif made_by == "plugin":
        op_id, host = other.get("xenvol-op", ""), other.get("xenvol-host", "")
        if host == call.host_uuid:
            path = journal.path_of(op_id)
            alive = os.path.exists(path) and not journal.dead(path)
        elif host not in hosts:
            alive = False
        else:
            alive = leases.operation_alive(call, host, op_id, probe=True) is not False
        if not alive:
            return "made by the plugin for operation %s, which is over" % op_id
    return None
