"""Disk device numbers as xapi reads them.

Follows xen-api ocaml/xapi-idl/xen/device_number.ml: a device is (bus, disk, partition); the same
name can mean different devices on an HVM guest (disks 0-3 are IDE) and on a PV guest (Xen).
"""

import re

XEN, SCSI, FLOPPY, IDE = "Xen", "Scsi", "Floppy", "Ide"

# device_number.ml max_of (deprecated IDE encoding on, as in xen-api).
_MAX = {XEN: ((1 << 20) - 1, 15), SCSI: (15, 15), FLOPPY: (2, 0), IDE: (19, 63)}
_PREFIX = {XEN: "xvd", SCSI: "sd", FLOPPY: "fd", IDE: "xvd"}

# xen-api ocaml/xapi/xapi_vm_helpers.ml allowed_VBD_devices_{HVM,PV,control_domain}
MAX_DEVICE = 254
MAX_DEVICE_CONTROL_DOMAIN = 255


def _make(bus, disk, partition):
    dmax, pmax = _MAX[bus]
    if 0 <= disk <= dmax and 0 <= partition <= pmax:
        return (bus, disk, partition)
    return None


def of_disk_number(hvm, n):
    """device_number.ml of_disk_number: disks 0-3 of an HVM guest are on the IDE bus."""
    return _make(IDE if hvm and n < 4 else XEN, n, 0)


def _b26(letters):
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - ord("a") + 1
    return n - 1


def of_linux_device(name):
    """device_number.ml of_linux_device. Like xen-api it does not range-check these names;
    a prefix with no letters (real: disk -1) is refused here, which is stricter."""
    for prefix, bus in (("xvd", XEN), ("sd", SCSI), ("fd", FLOPPY), ("hd", IDE)):
        if name.startswith(prefix):
            m = re.match(r"^([a-z]+)([0-9]*)$", name[len(prefix) :])
            if not m:
                return None
            return (bus, _b26(m.group(1)), int(m.group(2) or 0))
    m = re.match(r"^d([0-9]+)(?:p([0-9]+))?$", name)
    if m:
        return (XEN, int(m.group(1)), int(m.group(2) or 0))
    return None


def of_string(name, hvm):
    """device_number.ml of_string: an integer is a disk number, anything else a Linux name.
    (OCaml's int_of_string also takes 0x.. and 1_0 forms; this takes decimal only: stricter.)"""
    if re.match(r"^-?[0-9]+$", name):
        dev = of_disk_number(hvm, int(name))
        if dev is not None:
            return dev
    return of_linux_device(name)


def possible(name):
    """xapi_vm_helpers.ml possible_VBD_devices_of_string: the HVM and the PV reading."""
    return [d for d in (of_string(name, True), of_string(name, False)) if d is not None]


def linux(dev):
    """device_number.ml to_linux_device: (Ide, 1, 0) -> 'xvdb', (Scsi, 2, 1) -> 'sdc1'."""
    bus, disk, part = dev
    letters, n = "", disk + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return _PREFIX[bus] + letters + (str(part) if part else "")


def disk(dev):
    return dev[1]


def valid_userdevice(name, vbd_type):
    """xen-api ocaml/xapi/xapi_vbd_helpers.ml valid_device: 'autodetect', a name
    Device_number reads as PV, or (not for floppies) any integer at all."""
    if name == "autodetect" or of_string(name, False) is not None:
        return True
    return vbd_type != "Floppy" and re.match(r"^-?[0-9]+$", name) is not None


def allowed(hvm, control_domain, vbd_type):
    """xapi_vm_helpers.ml allowed_VBD_devices before filtering: None for a floppy on a PV
    guest (NOT_IMPLEMENTED), else the candidate devices in order."""
    if vbd_type == "Floppy":
        return [(FLOPPY, n, 0) for n in (0, 1)] if hvm else None
    top = MAX_DEVICE_CONTROL_DOMAIN if control_domain and not hvm else MAX_DEVICE
    return [of_disk_number(hvm, n) for n in range(top + 1)]
