"""The compensations a journal names: name -> function(call, **args).

Each one undoes (or, for a detach, finishes) one step whether or not the step's change
happened, found again from the step's arguments, and does nothing when there is nothing
left to do: it may run in the call that made the change, or in a later call recovering a
dead one."""

import XenAPI

from . import storage
from . import vbd as vbds
from .errors import from_xapi

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict  # noqa: F401

UNDO = {}  # type: Dict[str, Callable[..., Any]]


def compensation(name):
    """Register fn(call, **args) as the compensation `name` (drivers with steps of their own
    register theirs under a name of their own, e.g. "acme.unmap_lun")."""

    def register(fn):
        UNDO[name] = fn
        return fn

    return register


def find(name):
    """The compensation `name`; a third-party driver's registers when its file is loaded, so
    a call recovering another's journal loads the drivers first."""
    if name not in UNDO:
        from .registry import Registry

        Registry()
    return UNDO[name]


def _gone(f):
    return f.details[0] in ("HANDLE_INVALID", "UUID_INVALID")


@compensation("forget_sr")
def forget_sr(call, sr_uuid):
    """Undo our SR.introduce: forget the SR unless another call has started using it."""
    sr = call.find("SR", sr_uuid)
    if sr is None or call.x.SR.get_PBDs(sr):
        return
    call.x.SR.forget(sr)


@compensation("destroy_pbd")
def destroy_pbd(call, sr_uuid, host):
    sr = call.find("SR", sr_uuid)
    pbd = call.host_pbd(sr, host) if sr is not None else None
    if pbd is None:
        return
    if call.x.PBD.get_currently_attached(pbd):
        call.x.PBD.unplug(pbd)
    call.x.PBD.destroy(pbd)
    storage.remove_mark(call, sr, storage.PBD_MARK + call.x.host.get_uuid(host))


@compensation("unplug_pbd")
def unplug_pbd(call, sr_uuid, host):
    sr = call.find("SR", sr_uuid)
    pbd = call.host_pbd(sr, host) if sr is not None else None
    if pbd is not None and call.x.PBD.get_currently_attached(pbd):
        call.x.PBD.unplug(pbd)


@compensation("destroy_op_secrets")
def destroy_op_secrets(call, op_id):
    """The secrets the plugin made for an operation (tagged with its op id)."""
    for ref, rec in call.x.secret.get_all_records().items():
        other = rec["other_config"]
        if other.get("xenvol") == "plugin" and other.get("xenvol-op") == op_id:
            try:
                call.x.secret.destroy(ref)
            except XenAPI.Failure as f:
                if not _gone(f):
                    raise


def _vbd_of(call, vm, vdi):
    try:
        refs = call.x.VM.get_VBDs(vm)
    except XenAPI.Failure as f:
        if _gone(f):
            return None
        raise
    for ref in refs:
        try:
            rec = call.x.VBD.get_record(ref)
        except XenAPI.Failure:
            continue
        if rec["VDI"] == vdi and rec["other_config"].get(vbds.MARK) == "true":
            return ref
    return None


@compensation("destroy_vbd")
def destroy_vbd(call, vm, vdi):
    vbd = _vbd_of(call, vm, vdi)
    if vbd is not None:
        finish_detach(call, vbd)


@compensation("unplug_vbd")
def unplug_vbd(call, vbd):
    try:
        attached = call.x.VBD.get_currently_attached(vbd)
    except XenAPI.Failure as f:
        if _gone(f):
            return
        raise
    if attached:
        vbds.unplug(call, vbd)


@compensation("finish_detach")
def finish_detach(call, vbd):
    """Unplug (if plugged) and destroy a VBD xenvol made."""
    unplug_vbd(call, vbd)
    vbds.destroy(call, vbd)


@compensation("release_lun_claims")
def release_lun_claims(call, sr_uuid, mark):
    """Undo storage.claim_lun: the LUNs claimed under the call's mark that nothing uses."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        storage.release_claims(call, sr, mark)


@compensation("remove_claim")
def remove_claim(call, vdi, key):
    try:
        if key in call.x.VDI.get_other_config(vdi):
            call.x.VDI.remove_from_other_config(vdi, key)
    except XenAPI.Failure as f:
        if not _gone(f):
            raise from_xapi(f, "dropping the connection record") from None


@compensation("release_sr")
def release_sr(call, sr_uuid):
    """Finish a detach or disconnect: release the SR if nothing uses it any more."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        storage.release_sr(call, sr)


@compensation("undo_setup")
def undo_setup(call, sr_uuid, made, plugged):
    """Undo an SR's set-up (the PBDs made or plugged on those hosts, by ref) once other calls
    may use the SR: what nothing uses goes (storage.undo_setup)."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        storage.undo_setup(call, sr, made, plugged)


@compensation("restore_vdi_name")
def restore_vdi_name(call, vdi_uuid, label, text, named):
    """Undo integrate.name_vdi: the VDI's name, and the name xenvol gave it, as they were."""
    vdi = call.find("VDI", vdi_uuid)
    if vdi is None:
        return
    call.x.VDI.set_name_label(vdi, label)
    call.x.VDI.set_name_description(vdi, text)
    if "xenvol-named" in call.x.VDI.get_other_config(vdi):
        call.x.VDI.remove_from_other_config(vdi, "xenvol-named")
    if named is not None:
        call.x.VDI.add_to_other_config(vdi, "xenvol-named", named)
