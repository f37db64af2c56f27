"""VM power operations and VBD lifecycle."""
from . import devices
from .db import NULL
from .errors import XapiError
from .messages import message, require_fields


def _power(ctx, vm):
    return ctx.db.raw("VM", vm)["power_state"]


def _bad_power(vm, expected, actual):
    return XapiError("VM_BAD_POWER_STATE", vm, expected, actual.lower())


def _sr_plugged_on(ctx, sr, host):
    return any(ctx.db.raw("PBD", p)["currently_attached"]
               for p in ctx.db.find("PBD", SR=sr, host=host))


def _vbd_sr(ctx, vbd_rec):
    vdi = vbd_rec["VDI"]
    if vbd_rec["empty"] or not ctx.db.exists("VDI", vdi):
        return None
    return ctx.db.raw("VDI", vdi)["SR"]


# ------------------------------------------------------------------- VM
def _start(ctx, vm, host_ref):
    rec = ctx.db.raw("VM", vm)
    if rec["is_control_domain"] or rec["is_a_template"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on templates "
                        "or control domains")
    if rec["power_state"] != "Halted":
        raise _bad_power(vm, "halted", rec["power_state"])
    vbds = ctx.db.find("VBD", VM=vm)
    for vbd in vbds:
        sr = _vbd_sr(ctx, ctx.db.raw("VBD", vbd))
        if sr and not _sr_plugged_on(ctx, sr, host_ref):
            raise XapiError("VM_REQUIRES_SR", vm, sr)
    host = ctx.sim.host(host_ref)
    for vbd in vbds:
        v = ctx.db.raw("VBD", vbd)
        if not v["empty"]:
            _attach_vdi(ctx, v, host)
    for vbd in vbds:
        v = ctx.db.raw("VBD", vbd)
        v["currently_attached"] = True
        v["device"] = devices.xvd(devices.number(v["userdevice"]))
    rec.update({"power_state": "Running", "resident_on": host_ref,
                "domid": str(max([int(r["domid"]) for r in ctx.db.tables["VM"].values()] + [0]) + 1)})


@message("VM.start")
def vm_start(ctx, vm, start_paused, force):
    affinity = ctx.db.raw("VM", vm)["affinity"]
    host = affinity if ctx.db.exists("host", affinity) else ctx.sim.master.ref
    _start(ctx, vm, host)


@message("VM.start_on")
def vm_start_on(ctx, vm, host, start_paused, force):
    ctx.db.raw("host", host)
    _start(ctx, vm, host)


@message("VM.pool_migrate")
def vm_pool_migrate(ctx, vm, host_ref, options):
    """Live migration within the pool: every disk's SR must be plugged on the destination
    (local disks need VM.migrate_send, which this simulator does not model)."""
    rec = ctx.db.raw("VM", vm)
    dest = ctx.sim.host(host_ref)
    if rec["is_a_template"]:
        raise XapiError("VM_IS_TEMPLATE", vm)
    if rec["is_control_domain"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on control domains")
    if rec["power_state"] != "Running":
        raise _bad_power(vm, "running", rec["power_state"])
    vbds = [ctx.db.raw("VBD", v) for v in ctx.db.find("VBD", VM=vm)]
    for v in vbds:
        sr = _vbd_sr(ctx, v)
        if sr and not _sr_plugged_on(ctx, sr, dest.ref):
            raise XapiError("VM_REQUIRES_SR", vm, sr)
    source = ctx.sim.host(rec["resident_on"])
    attached = [v for v in vbds if v["currently_attached"] and not v["empty"]]
    for v in attached:
        _attach_vdi(ctx, v, dest)
    for v in attached:
        _detach_vdi(ctx, v, source)
    rec["resident_on"] = dest.ref


@message("VM.clean_shutdown", "VM.hard_shutdown")
def vm_shutdown(ctx, vm):
    rec = ctx.db.raw("VM", vm)
    if rec["is_control_domain"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on control domains")
    if rec["power_state"] != "Running":
        raise _bad_power(vm, "running", rec["power_state"])
    host = ctx.sim.host(rec["resident_on"])
    for vbd in ctx.db.find("VBD", VM=vm):
        v = ctx.db.raw("VBD", vbd)
        if v["currently_attached"] and not v["empty"]:
            _detach_vdi(ctx, v, host)
        v["currently_attached"] = False
    rec.update({"power_state": "Halted", "resident_on": NULL, "domid": "-1"})


@message("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(ctx, vm):
    rec = ctx.db.raw("VM", vm)
    top = devices.MAX_DEVICE + (1 if rec["is_control_domain"] else 0)
    used = set()
    for vbd in ctx.db.find("VBD", VM=vm):
        v = ctx.db.raw("VBD", vbd)
        for name in (v["userdevice"], v["device"]):
            n = devices.number(name) if name else None
            if n is not None:
                used.add(n)
    return [str(n) for n in range(top + 1) if n not in used]


# ------------------------------------------------------------------- VBD
@message("VBD.create")
def vbd_create(ctx, rec):
    rec = require_fields("VBD", rec)
    vm = rec["VM"]
    vm_rec = ctx.db.raw("VM", vm)
    vdi = rec["VDI"]
    if rec["type"] not in ("Disk", "CD", "Floppy"):
        raise XapiError("INTERNAL_ERROR", "Enum value not recognised: %s" % rec["type"])
    if rec["mode"] not in ("RO", "RW"):
        raise XapiError("INTERNAL_ERROR", "Enum value not recognised: %s" % rec["mode"])
    if rec["empty"] and rec["type"] != "CD":
        raise XapiError("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
    if not rec["empty"]:
        vdi_rec = ctx.db.raw("VDI", vdi)
        if rec["mode"] == "RW" and vdi_rec["read_only"]:
            raise XapiError("VDI_READONLY", vdi)
    else:
        vdi, vdi_rec = NULL, None
    userdevice = rec["userdevice"]
    taken = set()
    for other in ctx.db.find("VBD", VM=vm):
        n = devices.number(ctx.db.raw("VBD", other)["userdevice"])
        if n is not None:
            taken.add(n)
    if userdevice == "autodetect":
        free = [n for n in range(devices.MAX_DEVICE + 1) if n not in taken]
        if not free:
            raise XapiError("INVALID_DEVICE", userdevice)
        userdevice = str(free[0])
    n = devices.number(userdevice)
    if n is None or n > devices.MAX_DEVICE:
        raise XapiError("INVALID_DEVICE", userdevice)
    if n in taken:
        raise XapiError("DEVICE_ALREADY_EXISTS", userdevice)
    suspended = vm_rec["power_state"] == "Suspended"
    other_config = dict(rec["other_config"])
    if vdi_rec and "backend-kind" in vdi_rec["sm_config"]:
        other_config["backend-kind"] = vdi_rec["sm_config"]["backend-kind"]
    return ctx.db.create("VBD", {
        "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": rec["bootable"],
        "mode": rec["mode"], "type": rec["type"], "empty": rec["empty"],
        "unpluggable": rec.get("unpluggable", True), "other_config": other_config,
        "qos_algorithm_type": rec["qos_algorithm_type"],
        "qos_algorithm_params": dict(rec["qos_algorithm_params"]),
        # device and currently_attached are honoured only for a suspended VM.
        "device": rec.get("device", "") if suspended else "",
        "currently_attached": bool(rec.get("currently_attached", False)) if suspended else False,
    })


def _attach_vdi(ctx, vbd_rec, host):
    vdi = ctx.db.raw("VDI", vbd_rec["VDI"])
    sr = ctx.db.raw("SR", vdi["SR"])
    ctx.sim.sm.vdi_attach(host, sr, vdi)


def _detach_vdi(ctx, vbd_rec, host):
    if not ctx.db.exists("VDI", vbd_rec["VDI"]):
        return
    vdi = ctx.db.raw("VDI", vbd_rec["VDI"])
    if ctx.db.exists("SR", vdi["SR"]):
        ctx.sim.sm.vdi_detach(host, ctx.db.raw("SR", vdi["SR"]), vdi)


@message("VBD.plug")
def vbd_plug(ctx, vbd):
    rec = ctx.db.raw("VBD", vbd)
    vm = rec["VM"]
    if rec["currently_attached"]:
        raise XapiError("DEVICE_ALREADY_ATTACHED", vbd)
    state = _power(ctx, vm)
    if state != "Running":
        raise _bad_power(vm, "running", state)
    host = ctx.sim.host(ctx.db.raw("VM", vm)["resident_on"])
    if not rec["empty"]:
        vdi = ctx.db.raw("VDI", rec["VDI"])
        if not vdi["managed"]:
            raise XapiError("VDI_NOT_MANAGED", vbd)
        for other in ctx.db.find("VBD", VDI=rec["VDI"]):
            o = ctx.db.raw("VBD", other)
            if other != vbd and o["currently_attached"] and not vdi["sharable"] \
                    and "RW" in (o["mode"], rec["mode"]):
                raise XapiError("VDI_IN_USE", rec["VDI"])
        if rec["mode"] == "RW" and vdi["read_only"]:
            raise XapiError("VDI_READONLY", rec["VDI"])
        if not _sr_plugged_on(ctx, vdi["SR"], host.ref):
            raise XapiError("VM_REQUIRES_SR", vm, vdi["SR"])
        _attach_vdi(ctx, rec, host)
    rec["currently_attached"] = True
    rec["device"] = devices.xvd(devices.number(rec["userdevice"]))


@message("VBD.unplug", "VBD.unplug_force")
def vbd_unplug(ctx, vbd):
    rec = ctx.db.raw("VBD", vbd)
    if not rec["unpluggable"]:
        raise XapiError("VBD_NOT_UNPLUGGABLE", vbd)
    if not rec["currently_attached"]:
        raise XapiError("DEVICE_ALREADY_DETACHED", vbd)
    vm = ctx.db.raw("VM", rec["VM"])
    if vm["power_state"] != "Running":
        raise _bad_power(rec["VM"], "running", vm["power_state"])
    if not rec["empty"]:
        _detach_vdi(ctx, rec, ctx.sim.host(vm["resident_on"]))
    rec["currently_attached"] = False


@message("VBD.destroy")
def vbd_destroy(ctx, vbd):
    rec = ctx.db.raw("VBD", vbd)
    if rec["currently_attached"]:
        vm_uuid = ctx.db.raw("VM", rec["VM"])["uuid"]
        raise XapiError("OPERATION_NOT_ALLOWED",
                        "VBD '%s' still attached to '%s'" % (rec["uuid"], vm_uuid))
    ctx.db.destroy("VBD", vbd)
