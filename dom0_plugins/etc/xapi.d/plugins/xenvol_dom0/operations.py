"""The plugin's functions. Each takes (session, args) with args a string->string map and
returns a JSON string; docs/plugin-api.md is their contract, with xe examples."""

import XenAPI

from . import log, storage, vbd as vbds
from .call import NULL, Call
from .check import Fields, parse_json
from .errors import (INVALID_ARGUMENT, INVALID_CONNECTION_INFO, VM_NOT_FOUND, XenvolError,
                     invalid, vanished)
from .locks import Lock
from .redact import SCRUB
from .registry import Registry
from .txn import Steps
from .version import API_LEVEL, VERSION

# A concurrent release on another host can forget an SR between our steps; such a call is
# rolled back and tried again, at most this many times in all.
ATTEMPTS = 3


def version(session, args):
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    return {"plugin": "xenvol", "version": VERSION, "api_level": API_LEVEL}


def list_drivers(session, args):
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    return Registry().describe()


# ---------------------------------------------------------------------- helpers
def _connection_info(a, required=True):
    if not a.has("connection_info"):
        if required:
            raise invalid("connection_info", "is required", INVALID_CONNECTION_INFO)
        return None
    info = parse_json(a.string("connection_info", max_len=64 * 1024), "connection_info",
                      INVALID_CONNECTION_INFO)
    SCRUB.remember_in(info)
    ci = Fields(info, "connection_info")
    volume_type = ci.string("driver_volume_type", max_len=64)
    if "data" not in info:
        raise ci.bad("data", "is required")
    return volume_type, Fields(info["data"], "data")


def _driver_and_config(call, volume_type, data):
    driver = Registry().get(volume_type)
    cfg = driver.validate(data)
    cfg["host_uuid"] = call.host_uuid
    cfg["driver_volume_type"] = volume_type
    return driver, cfg


def _vm(call, a):
    vm_uuid = a.uuid("vm_uuid")
    vm = call.find("VM", vm_uuid)
    if vm is None:
        raise XenvolError(VM_NOT_FOUND, "vm_uuid: no VM %s" % vm_uuid, field="vm_uuid",
                          vm_uuid=vm_uuid)
    if call.x.VM.get_is_a_template(vm):
        raise invalid("vm_uuid", "%s is a template, not a VM" % vm_uuid, INVALID_ARGUMENT)
    return vm, vm_uuid


def _connect_then(call, driver, cfg, then):
    """Connect the volume under its SR's lock, then run then(vdi, steps) for the rest of the
    call; on failure every recorded step is rolled back. A call that met an object a
    concurrent release removed is rolled back and tried again."""
    lock = "sr-" + driver.sr_uuid(cfg)
    for attempt in range(ATTEMPTS):
        try:
            with Lock(lock, call.settings["lock_timeout"]):
                steps = Steps()
                try:
                    _sr, vdi = driver.connect_volume(call, cfg, steps)
                    result = then(vdi, steps)
                except Exception as e:
                    _rollback(call, driver, steps, e)
                    raise
                finally:
                    call.finish()
                steps.commit()
                return result
        except (XenvolError, XenAPI.Failure) as e:
            if not vanished(e) or attempt == ATTEMPTS - 1:
                raise
            log.step("an object vanished under a concurrent call; trying again")


def _rollback(call, driver, steps, error):
    failed = driver.rollback(call, steps)
    if failed and isinstance(error, XenvolError):
        error.details["rollback_incomplete"] = failed


def _describe(call, vbd):
    x = call.x
    rec = x.VBD.get_record(vbd)
    vdi = rec["VDI"]
    sr = x.VDI.get_SR(vdi) if vdi != NULL else NULL
    return {"vbd_uuid": rec["uuid"], "vm_uuid": x.VM.get_uuid(rec["VM"]),
            "vdi_uuid": x.VDI.get_uuid(vdi) if vdi != NULL else "",
            "sr_uuid": x.SR.get_uuid(sr) if sr != NULL else "",
            "userdevice": rec["userdevice"],
            "device": rec["device"] or vbds.device_name(vbds.device_number(rec["userdevice"])),
            "plugged": rec["currently_attached"], "mode": rec["mode"].lower(),
            "driver_volume_type": rec["other_config"].get("xenvol-driver", ""),
            "volume_id": rec["other_config"].get("xenvol-volume-id", "")}


# ---------------------------------------------------------------------- connect / disconnect
def connect_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info",))
    volume_type, data = _connection_info(a)
    driver, cfg = _driver_and_config(call, volume_type, data)

    def claim(vdi, steps):
        _claim(call, vdi, steps)
        return {"sr_uuid": driver.sr_uuid(cfg), "vdi_uuid": call.x.VDI.get_uuid(vdi),
                "host_uuid": call.host_uuid, "driver_volume_type": volume_type}
    return _connect_then(call, driver, cfg, claim)


def _claim(call, vdi, steps):
    """Mark the VDI as held by this host, so no release forgets its SR."""
    x = call.x
    claim = storage.CONNECTED + call.host_uuid
    if claim not in call.do("reading the VDI", x.VDI.get_other_config, vdi):
        call.do("recording the connection", x.VDI.add_to_other_config, vdi, claim, "true")
        steps.did("record connection", lambda: x.VDI.remove_from_other_config(vdi, claim))


def disconnect_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info", "sr_uuid", "vdi_uuid"))
    found = _connection_info(a, required=False)
    if found:
        driver, cfg = _driver_and_config(call, *found)
        sr_uuid = driver.sr_uuid(cfg)
        sr = call.find("SR", sr_uuid)
        vdi = driver.locate_vdi(call, sr, cfg) if sr else None
    else:
        if not a.has("sr_uuid"):
            raise invalid("connection_info", "give connection_info, or sr_uuid and vdi_uuid",
                          INVALID_ARGUMENT)
        sr_uuid, vdi_uuid = a.uuid("sr_uuid"), a.uuid("vdi_uuid")
        sr, vdi = call.find("SR", sr_uuid), call.find("VDI", vdi_uuid)
    if sr is None:
        return {"sr_uuid": sr_uuid, "note": "not connected: no such SR"}
    with Lock("sr-" + sr_uuid, call.settings["lock_timeout"]):
        if vdi is not None:
            claim = storage.CONNECTED + call.host_uuid
            if claim in call.x.VDI.get_other_config(vdi):
                call.do("dropping the connection record", call.x.VDI.remove_from_other_config,
                        vdi, claim)
        note = storage.release_sr(call, sr)
    return {"sr_uuid": sr_uuid, "note": note}


# ---------------------------------------------------------------------- attach / detach
def attach_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info", "vm_uuid", "mountpoint", "mode", "hotplug"))
    volume_type, data = _connection_info(a)
    driver, cfg = _driver_and_config(call, volume_type, data)
    vm, vm_uuid = _vm(call, a)
    number = vbds.device_number(a.string("mountpoint", required=False, default="autodetect",
                                         max_len=64))
    mode = a.choice("mode", ("rw", "ro"), "ro" if driver.read_only(cfg) else "rw")
    if mode == "rw" and driver.read_only(cfg):
        raise invalid("mode", "the volume's access_mode is ro; it cannot be attached rw",
                      INVALID_ARGUMENT)
    hotplug = a.boolean("hotplug", True)
    marks = {vbds.MARK: "true", "xenvol-host": call.host_uuid, "xenvol-driver": volume_type}
    if cfg.get("volume_id"):
        marks["xenvol-volume-id"] = cfg.volume_id

    def attach(vdi, steps):
        with Lock("vm-" + vm_uuid, call.settings["lock_timeout"]):
            return _attach_to_vm(call, vm, vdi, number, mode == "ro", hotplug, marks, steps)
    result = _connect_then(call, driver, cfg, attach)
    result["host_uuid"] = call.host_uuid
    return result


# XAPI refuses a hot-plug into an HVM guest that cannot take one (xen-api
# ocaml/xapi/xapi_vbd_helpers.ml valid_operations): no PV drivers, or the guest says so.
_NO_HOTPLUG = (("VM_MISSING_PV_DRIVERS",),
               ("OPERATION_NOT_ALLOWED", "VM states it does not support VBD hotplug."))
NOTE_NEXT_BOOT = ("not plugged: the guest cannot hot-plug disks (HVM without PV drivers); "
                  "the disk appears at the VM's next start")


def _ro_on_hvm():
    # xen-api ocaml/xapi/xapi_vbd.ml plug (CA-83260) refuses RO disks on HVM guests, and at boot
    # qemu leaves RO disks out (xenopsd), so xenvol refuses them hot and cold alike.
    return invalid("mode", "an HVM guest cannot take a read-only disk; attach it rw",
                   INVALID_ARGUMENT)


def _attach_to_vm(call, vm, vdi, number, read_only, hotplug, marks, steps):
    x = call.x
    vm_rec = call.do("reading the VM", x.VM.get_record, vm)
    running = vm_rec["power_state"] == "Running"
    vbd = vbds.find(call, vm, vdi)
    note = ""
    if vbd is not None:
        note = "already attached"
        log.step("volume already attached to the VM", userdevice=x.VBD.get_userdevice(vbd))
    else:
        if read_only and vm_rec["domain_type"] == "hvm":
            raise _ro_on_hvm()
        for _try in range(5):
            userdevice = number if number is not None else vbds.choose_device(call, vm)
            vbd = vbds.create(call, vm, vdi, userdevice, read_only, marks, steps,
                              explicit=number is not None)
            if vbd is not None:
                break
        else:
            raise XenvolError("XENVOL_DEVICE_IN_USE", "no free device after 5 attempts",
                              field="mountpoint")
    if hotplug and running and not x.VBD.get_currently_attached(vbd):
        try:
            vbds.plug(call, vbd, steps)
        except XenvolError as e:
            refused = e.details.get("xapi_error", [])
            if refused[:1] == ["DISK_VBD_MUST_BE_READWRITE_FOR_HVM"]:
                raise _ro_on_hvm()
            if not any(refused[:len(c)] == list(c) for c in _NO_HOTPLUG):
                raise
            log.step("guest cannot hot-plug; leaving the disk for the next start",
                     error=refused[0])
            note = NOTE_NEXT_BOOT
    out = _describe(call, vbd)
    if note:
        out["note"] = note
    return out


def detach_volume(session, args):
    call = Call(session)
    x = call.x
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("vm_uuid", "mountpoint", "vbd_uuid", "vdi_uuid"))
    if a.has("vbd_uuid"):
        ref = call.find("VBD", a.uuid("vbd_uuid"))
        targets, field = ([ref] if ref else []), "vbd_uuid"
    elif a.has("vdi_uuid"):
        vdi = call.find("VDI", a.uuid("vdi_uuid"))
        targets = [v for v in (x.VDI.get_VBDs(vdi) if vdi else [])
                   if x.VBD.get_other_config(v).get(vbds.MARK) == "true"]
        field = "vdi_uuid"
    elif a.has("vm_uuid"):
        vm, _vm_uuid = _vm(call, a)
        number = vbds.device_number(a.string("mountpoint", max_len=64))
        if number is None:
            raise invalid("mountpoint", "name the device to detach, not autodetect",
                          INVALID_ARGUMENT)
        ref = vbds.at_device(call, vm, number)
        targets, field = ([ref] if ref else []), "mountpoint"
    else:
        raise invalid("vbd_uuid", "give vbd_uuid, vdi_uuid, or vm_uuid and mountpoint",
                      INVALID_ARGUMENT)
    if not targets:
        return {"detached": [], "note": "nothing to detach: not attached"}
    detached, notes = [], []
    for ref in targets:
        other = x.VBD.get_other_config(ref)
        if other.get(vbds.MARK) != "true":
            raise invalid(field, "that disk was not attached by xenvol; detach it with xe",
                          INVALID_ARGUMENT)
        described = _describe(call, ref)
        if x.VBD.get_currently_attached(ref):
            log.step("unplugging VBD", vbd_uuid=described["vbd_uuid"])
            vbds.unplug(call, ref)
        log.step("destroying VBD", vbd_uuid=described["vbd_uuid"])
        vbds.destroy(call, ref)
        detached.append(described)
        if described["sr_uuid"]:
            sr = call.find("SR", described["sr_uuid"])
            if sr is not None:
                with Lock("sr-" + described["sr_uuid"], call.settings["lock_timeout"]):
                    notes.append(storage.release_sr(call, sr))
    return {"detached": detached, "note": "; ".join(notes)}


def list_attachments(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("vm_uuid",))
    vm_ref = _vm(call, a)[0] if a.has("vm_uuid") else None
    out = []
    for ref, rec in call.x.VBD.get_all_records().items():
        other = rec["other_config"]
        if other.get(vbds.MARK) != "true":
            continue
        # A VM's volumes wherever they were attached (it may have migrated here); without a
        # VM, the ones attached on this host, so that listing every host lists each once.
        if vm_ref is not None and rec["VM"] != vm_ref:
            continue
        if vm_ref is None and other.get("xenvol-host") != call.host_uuid:
            continue
        try:
            out.append(_describe(call, ref))
        except XenAPI.Failure:
            continue  # destroyed while we listed
    return {"host_uuid": call.host_uuid, "attachments": sorted(out, key=lambda d: (
        d["vm_uuid"], int(d["userdevice"]) if d["userdevice"].isdigit() else 0))}


FUNCTIONS = ("version", "list_drivers", "connect_volume", "disconnect_volume", "attach_volume",
             "detach_volume", "list_attachments")


