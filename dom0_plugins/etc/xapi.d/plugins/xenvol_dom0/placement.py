"""Placement: keep a volume's SR plugged on the hosts a VM may run on. prepare_host plugs,
on this host, the SRs of a VM's xenvol disks (before a migration here); release_host drops
this host's PBDs of them that nothing here needs; reconcile keeps pool-wide placement
(storage.PLACEMENT, marked by storage.ensure_sr) up to date as hosts join or come back."""

import XenAPI

from . import storage
from . import vbd as vbds
from .call import NULL
from .errors import VDI_NOT_FOUND, XenvolError, vanished
from .txn import Steps

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional  # noqa: F401

    from .call import Call  # noqa: F401


def vm_srs(call, vm):
    # type: (Call, str) -> List[str]
    """The SRs of the VM's xenvol disks."""
    x = call.x
    out = []
    for vbd in x.VM.get_VBDs(vm):
        rec = x.VBD.get_record(vbd)
        if rec["other_config"].get(vbds.MARK) != "true" or rec["VDI"] == NULL:
            continue
        sr = x.VDI.get_SR(rec["VDI"])
        if sr not in out:
            out.append(sr)
    return out


def plug_here(call, sr, steps, host=None):
    # type: (Call, str, Steps, Optional[str]) -> str
    """A plugged PBD of the SR on host (default this one), made from an existing PBD's
    device_config: xapi's PBD.create duplicates the secrets its *_secret keys name
    (xapi_pbd.ml create / Xapi_secret.duplicate_passwords), so each PBD owns its own."""
    x = call.x
    host = host or call.host
    sr_uuid = x.SR.get_uuid(sr)
    pbd = call.host_pbd(sr, host)
    if pbd is None:
        others = x.SR.get_PBDs(sr)
        if not others:
            raise XenvolError(VDI_NOT_FOUND, "SR %s has no PBD to copy" % sr_uuid, sr_uuid=sr_uuid)
        dconf = x.PBD.get_device_config(others[0])
        pbd, created = storage.create_pbd(call, sr, sr_uuid, host, dconf, steps)
        if created:
            call.do(
                "marking the SR",
                x.SR.add_to_other_config,
                sr,
                storage.PBD_MARK + x.host.get_uuid(host),
                "true",
            )
    if not x.PBD.get_currently_attached(pbd):
        with steps.change("plug PBD of SR %s" % sr_uuid, "unplug_pbd", sr_uuid=sr_uuid, host=host):
            call.do("plugging the SR", x.PBD.plug, pbd)
    return pbd


def prepare_host(call, vm):
    # type: (Call, str) -> List[str]
    """Plug the SRs of the VM's xenvol disks on this host (a migration's destination)."""
    done = []
    for sr in vm_srs(call, vm):
        sr_uuid = call.x.SR.get_uuid(sr)
        with call.lock("sr-" + sr_uuid):
            steps = Steps(call)
            try:
                plug_here(call, sr, steps)
            except Exception:
                steps.rollback()
                raise
            steps.commit()
        done.append(sr_uuid)
    return done


def release_host(call, vm):
    # type: (Call, str) -> List[Dict[str, str]]
    """Drop this host's PBDs of the VM's xenvol SRs that xenvol made and nothing on this host
    needs: not the master (xapi scans shared SRs there), not an SR in pool-wide placement, no
    VM resident here (or about to start here, or halted with its affinity here) using one of
    its VDIs, no connect claim. A release like any other: under the SR's lease, so that an
    attach here that made its VBD meanwhile finds the PBD gone and starts again."""
    x = call.x
    master = x.pool.get_master(x.pool.get_all()[0])
    out = []
    for sr in vm_srs(call, vm):
        sr_uuid = x.SR.get_uuid(sr)
        with call.lock("sr-" + sr_uuid):
            out.append({"sr_uuid": sr_uuid, "note": _release_here(call, sr, master)})
    return out


def _release_here(call, sr, master):
    # type: (Call, str, str) -> str
    x = call.x
    other = x.SR.get_other_config(sr)
    mark = storage.PBD_MARK + call.host_uuid
    if call.host == master:
        return "kept: the pool master scans shared SRs"
    if other.get(storage.PLACEMENT) == "pool":
        return "kept: pool-wide placement"
    if other.get(mark) != "true" and other.get(storage.INTRODUCED) != "true":
        # (xenvol makes every PBD of an SR it introduced, and marks none of them)
        return "kept: xenvol did not make this host's PBD"
    return storage.leased(call, sr, lambda c, s: _drop_pbd_here(c, s, mark))


def _drop_pbd_here(call, sr, mark):
    # type: (Call, str, str) -> str
    x = call.x
    for vdi in x.SR.get_VDIs(sr):
        vrec = x.VDI.get_record(vdi)
        if storage.CONNECTED + call.host_uuid in vrec["other_config"]:
            return "kept: connected on this host"
        for vbd in vrec["VBDs"]:
            vm = x.VM.get_record(x.VBD.get_VM(vbd))
            if call.host in (vm["resident_on"], vm["scheduled_to_be_resident_on"]):
                return "kept: a VM on this host uses it"
            # xapi tries a halted VM's affinity host first (xen-api xapi_vm_helpers.ml
            # get_affinity_host, choose_host): the PBD there is what lets it start there.
            if vm["power_state"] in ("Halted", "Suspended") and vm["affinity"] == call.host:
                return "kept: a halted VM that starts on this host uses it"
    pbd = call.this_host_pbd(sr)
    if pbd is not None:
        if x.PBD.get_currently_attached(pbd):
            call.do("unplugging the SR", x.PBD.unplug, pbd)
        call.do("destroying the PBD", x.PBD.destroy, pbd)
    storage.remove_mark(call, sr, mark)
    return "PBD removed"


def reconcile(call, apply):
    # type: (Call, bool) -> Dict[str, Any]
    """Pool-wide placement kept up to date: each SR xenvol placed pool-wide gets a plugged
    PBD on every enabled, live host (hosts that joined or came back since)."""
    x = call.x
    hosts = storage.pool_hosts(call)
    items = []
    for sr, rec in x.SR.get_all_records().items():
        if rec["other_config"].get(storage.PLACEMENT) != "pool":
            continue
        have = dict((x.PBD.get_host(p), x.PBD.get_currently_attached(p)) for p in rec["PBDs"])
        for host in hosts:
            if have.get(host):
                continue
            item = {
                "sr_uuid": rec["uuid"],
                "host_uuid": x.host.get_uuid(host),
                "action": "plug" if host in have else "create and plug",
            }
            if apply:
                with call.lock("sr-" + rec["uuid"]):
                    steps = Steps(call)
                    try:
                        plug_here(call, sr, steps, host)
                    except (XenvolError, XenAPI.Failure) as e:
                        steps.rollback()
                        if vanished(e):
                            continue
                        item["error"] = getattr(e, "message", None) or str(e)
                    else:
                        steps.commit()
            items.append(item)
    return {"items": items, "applied": apply}
