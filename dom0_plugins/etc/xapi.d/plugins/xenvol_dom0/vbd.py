"""VBDs: device numbers from mount points, create and plug, and a patient unplug."""

import re
import time

import XenAPI

from . import log
from .errors import DETACH_FAILED, DEVICE_IN_USE, INVALID_ARGUMENT, XenvolError, from_xapi, invalid
from .marks import MADE_BY
from .undo import compensation

MARK = MADE_BY  # "true" on a VBD xenvol made
MAX_DEVICE = 254
# Device 3 is where HVM guests keep their CD drive; autodetect avoids it, as XO does.
CD_SLOT = "3"
_RETRY_UNPLUG = ("DEVICE_DETACH_REJECTED", "INTERNAL_ERROR", "VM_MISSING_PV_DRIVERS")


def device_number(mountpoint, field="mountpoint"):
    """'/dev/xvdb', 'xvdb', 'sdc', 'hdd', '5', 'xvdaa' -> '1', '2', '3', '5', '26';
    'autodetect' -> None."""
    m = mountpoint.strip()
    if m == "autodetect":
        return None
    if m.startswith("/dev/"):
        m = m[5:]
    if re.match(r"^[0-9]{1,3}$", m):
        n = int(m)
    else:
        match = re.match(r"^(?:xvd|sd|hd|vd)([a-z]{1,2})$", m)
        if not match:
            raise invalid(
                field,
                "%r is not a disk device (xvdb, /dev/sdc, hdd, 1, autodetect)" % mountpoint[:64],
                INVALID_ARGUMENT,
            )
        n = 0
        for ch in match.group(1):
            n = n * 26 + ord(ch) - ord("a") + 1
        n -= 1
    if n > MAX_DEVICE:
        raise invalid(
            field,
            "device number %d is beyond the last one (%d)" % (n, MAX_DEVICE),
            INVALID_ARGUMENT,
        )
    return str(n)


def device_name(userdevice):
    n = int(userdevice) + 1
    letters = ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return "xvd" + letters


def choose_device(call, vm):
    """The first free disk device, not 0 (the boot disk's) nor the CD slot when another is
    free. From the VM's VBDs as this call read them when it has (xen-api
    xapi_vm_helpers.ml allowed_VBD_devices: 0..254 for HVM and PV guests alike, less every
    device a VBD of the VM names); else, or after losing a race, xapi's own list."""
    known = call.vm_vbds.pop(vm, None)
    if known is not None:
        used = set()
        for rec in known.values():
            try:
                used.add(device_number(rec["userdevice"], "userdevice"))
            except XenvolError:
                pass  # not a disk device name: blocks no number
        allowed = [str(n) for n in range(MAX_DEVICE + 1) if str(n) not in used]
    else:
        allowed = call.do("asking for free devices", call.x.VM.get_allowed_VBD_devices, vm)
    allowed = sorted(allowed, key=int)
    preferred = [d for d in allowed if d not in ("0", CD_SLOT)] or allowed
    if not preferred:
        raise XenvolError(DEVICE_IN_USE, "the VM has no free disk device", field="mountpoint")
    return preferred[0]


def find(call, vm, vdi):
    """The VM's VBD of vdi, or None: one filtered read whatever disks the VM has (none when
    the policy check just read the VDI's VBDs, under the same locks)."""
    known = call.vdi_vbds.get(vdi)
    if known is not None:
        mine = sorted(v for v, r in known.items() if r["VM"] == vm)
        return mine[0] if mine else None
    found = call.do(
        "listing the VM's disks",
        call.x.VBD.get_all_records_where,
        'field "VM" = "%s" and field "VDI" = "%s"' % (vm, vdi),
    )
    return sorted(found)[0] if found else None


def at_device(call, vm, number):
    found = call.do(
        "listing the VM's disks", call.x.VBD.get_all_records_where, 'field "VM" = "%s"' % vm
    )
    call.vbd_records.update(found)
    for vbd, rec in sorted(found.items()):
        if device_number(rec["userdevice"], "userdevice") == number:
            return vbd
    return None


def create(call, vm, vdi, userdevice, read_only, marks, steps, explicit):
    x = call.x
    rec = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": False,
        "mode": "RO" if read_only else "RW",
        "type": "Disk",
        "empty": False,
        "unpluggable": True,
        "other_config": marks,
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    log.step("creating VBD", userdevice=userdevice, mode=rec["mode"])
    steps.will("create VBD", "destroy_vbd", vm=vm, vdi=vdi)
    try:
        vbd = x.VBD.create(rec)
    except XenAPI.Failure as f:
        steps.finished()
        if f.details[0] == "DEVICE_ALREADY_EXISTS":
            if explicit:
                raise XenvolError(
                    DEVICE_IN_USE,
                    "mountpoint: device %s of the VM is taken" % userdevice,
                    field="mountpoint",
                    userdevice=userdevice,
                ) from None
            return None  # lost a race for an autodetected device; the caller picks again
        raise from_xapi(f, "creating the VBD") from None
    return vbd


def plug(call, vbd, steps):
    with steps.change("plug VBD", "unplug_vbd", vbd=vbd):
        call.do("plugging the disk into the VM", call.x.VBD.plug, vbd)


def unplug(call, vbd):
    """Unplug with bounded retries while the guest refuses; already detached is done."""
    x = call.x
    attempts = int(call.settings["unplug_attempts"])
    delay = float(call.settings["unplug_retry_delay"])
    last = None
    for attempt in range(attempts):
        try:
            x.VBD.unplug(vbd)
            return
        except XenAPI.Failure as f:
            code = f.details[0]
            if code in ("DEVICE_ALREADY_DETACHED", "VM_BAD_POWER_STATE"):
                return
            if code == "VBD_NOT_UNPLUGGABLE":
                log.step("VBD was not unpluggable; allowing it")
                call.do("making the disk unpluggable", x.VBD.set_unpluggable, vbd, True)
                continue
            if code not in _RETRY_UNPLUG:
                raise from_xapi(f, "unplugging the disk") from None
            last = f
            log.step("unplug refused; retrying", error=code, attempt=attempt + 1)
            time.sleep(delay)
    raise XenvolError(
        DETACH_FAILED,
        "the guest did not release the disk after %d attempts (%s)"
        % (attempts, last.details[0] if last else "?"),
        xapi_error=last.details if last else [],
    )


def destroy(call, vbd):
    try:
        call.x.VBD.destroy(vbd)
    except XenAPI.Failure as f:
        if f.details[0] != "HANDLE_INVALID":
            raise from_xapi(f, "destroying the VBD") from None


# ---------------------------------------------------------------------- compensations
def _gone(f):
    return f.details[0] in ("HANDLE_INVALID", "UUID_INVALID")


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
        if rec["VDI"] == vdi and rec["other_config"].get(MARK) == "true":
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
        unplug(call, vbd)


@compensation("finish_detach")
def finish_detach(call, vbd):
    """Unplug (if plugged) and destroy a VBD xenvol made."""
    unplug_vbd(call, vbd)
    destroy(call, vbd)
