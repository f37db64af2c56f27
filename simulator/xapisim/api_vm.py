"""VM power operations and VBD lifecycle."""

import threading
import time
import uuid as uuidlib

from . import devices
from .api_pool import forward_to
from .db import NULL
from .errors import XapiError
from .handlers import message, require_fields

# Enums unmarshal case-insensitively and are stored in their datamodel spelling
# (ocaml-rpc ppx/ppx_deriving_rpc.ml variant of_rpc matches on Rpc.lowerfn of the value).
_ENUMS = {
    "vbd_type": ("Disk", "CD", "Floppy"),
    "vbd_mode": ("RO", "RW"),
    "domain_type": ("hvm", "pv", "pv_in_pvh", "pvh", "unspecified"),
}


def _enum(kind, value):
    for name in _ENUMS[kind]:
        if name.lower() == str(value).lower():
            return name
    raise XapiError(
        "INTERNAL_ERROR",
        "Unhandled pattern when unmarshalling variant type: found 'S(%s)'" % str(value).lower(),
    )


def _power(ctx, vm):
    return ctx.db.raw("VM", vm)["power_state"]


def _bad_power(vm, expected, actual):
    return XapiError("VM_BAD_POWER_STATE", vm, expected, actual.lower())


def _sr_plugged_on(ctx, sr, host):
    return any(
        ctx.db.raw("PBD", p)["currently_attached"] for p in ctx.db.find("PBD", SR=sr, host=host)
    )


def _vbd_sr(ctx, vbd_rec):
    vdi = vbd_rec["VDI"]
    if vbd_rec["empty"] or not ctx.db.exists("VDI", vdi):
        return None
    return ctx.db.raw("VDI", vdi)["SR"]


def _domain_type(ctx, vm_rec):
    """xen-api ocaml/xapi/helpers.ml domain_type: VM_metrics.current_domain_type while the
    domain exists, VM.domain_type when halted; unspecified is an internal error."""
    if vm_rec["power_state"] in ("Running", "Paused", "Suspended"):
        value = (
            ctx.db.raw("VM_metrics", vm_rec["metrics"])["current_domain_type"]
            if ctx.db.exists("VM_metrics", vm_rec["metrics"])
            else "unspecified"
        )
    else:
        value = vm_rec["domain_type"]
    if value == "unspecified":
        raise XapiError("INTERNAL_ERROR", "unspecified domain type")
    return value


def _is_system_domain(vm_rec):
    # xen-api ocaml/xapi/system_domains.ml is_system_domain
    return vm_rec["is_control_domain"] or vm_rec["other_config"].get("is_system_domain") == "true"


def _pv_drivers_error(ctx, vm, vm_rec):
    """xen-api ocaml/xapi/xapi_vbd_helpers.ml valid_operations, the HVM block, with
    xapi_pv_driver_version.ml: the guest's claim first, then PV_drivers_detected, then a
    parseable PV_drivers_version (major and minor integers)."""
    gm = vm_rec["guest_metrics"]
    gmr = ctx.db.raw("VM_guest_metrics", gm) if ctx.db.exists("VM_guest_metrics", gm) else None
    if gmr is not None:
        if gmr["can_use_hotplug_vbd"] == "yes":
            return None
        if gmr["can_use_hotplug_vbd"] == "no":
            return XapiError("OPERATION_NOT_ALLOWED", "VM states it does not support VBD hotplug.")
        if gmr["PV_drivers_detected"]:
            return None
        version = gmr["PV_drivers_version"]
        try:
            int(version["major"]), int(version["minor"])
            return None
        except (KeyError, ValueError):
            pass
    return XapiError("VM_MISSING_PV_DRIVERS", vm)


def _vbd_error(ctx, vbd, op):
    """The first error xen-api ocaml/xapi/xapi_vbd_helpers.ml valid_operations gives for op
    (plug, unplug, unplug_force, attach), in its order; None if allowed. VBD and VDI
    current_operations are not modelled (no concurrent operations here)."""
    rec = ctx.db.raw("VBD", vbd)
    vm = rec["VM"]
    vm_rec = ctx.db.raw("VM", vm)
    state = vm_rec["power_state"]
    unplug_ops = ("unplug", "unplug_force")
    if op in unplug_ops and not rec["unpluggable"]:
        return XapiError("VBD_NOT_UNPLUGGABLE", vbd)
    if op in ("plug",) + unplug_ops:
        if state == "Running":
            if rec["currently_attached"] and op == "plug":
                return XapiError("DEVICE_ALREADY_ATTACHED", vbd)
            if not rec["currently_attached"] and op in unplug_ops:
                return XapiError("DEVICE_ALREADY_DETACHED", vbd)
        else:
            # Not running: always refused, whatever currently_attached says.
            return _bad_power(vm, "running", state)
        if _domain_type(ctx, vm_rec) == "hvm":
            err = _pv_drivers_error(ctx, vm, vm_rec)
            if err is not None:
                return err
            if rec["type"] == "CD":
                return XapiError(
                    "OPERATION_NOT_ALLOWED",
                    "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected",
                )
    if rec["empty"]:
        return None
    vdi = rec["VDI"]
    vdi_rec = ctx.db.raw("VDI", vdi)
    if not vdi_rec["managed"]:
        return XapiError("VDI_NOT_MANAGED", vbd)
    if op not in ("attach", "plug") or rec["currently_attached"]:
        return None
    others = []
    for other in ctx.db.find("VBD", VDI=vdi):
        o = ctx.db.raw("VBD", other)
        if other == vbd or not o["currently_attached"]:
            continue
        ovm = ctx.db.raw("VM", o["VM"])
        if ovm["power_state"] == "Suspended" or _is_system_domain(ovm):
            continue
        others.append(o)
    need_write = rec["mode"] == "RW"
    if (
        not vdi_rec["sharable"]
        and not _is_system_domain(vm_rec)
        and (any(o["mode"] == "RW" for o in others) or (need_write and others))
    ):
        return XapiError("VDI_IN_USE", vdi)
    if need_write and vdi_rec["read_only"]:
        return XapiError("VDI_READONLY", vdi)
    return None


def _check_vbd(ctx, vbd, op):
    err = _vbd_error(ctx, vbd, op)
    if err is not None:
        raise err


def _device_of(vm_rec, vbd_rec):
    """xen-api ocaml/xapi/xapi_xenops.ml MD.of_vbd: the userdevice read for the VM's
    domain_type, INVALID_DEVICE when it does not parse; VBD.device is its Linux name."""
    dev = devices.of_string(vbd_rec["userdevice"], vm_rec["domain_type"] == "hvm")
    if dev is None:
        raise XapiError("INVALID_DEVICE", vbd_rec["userdevice"])
    return devices.linux(dev)


def _attach_on(ctx, vbd_rec, host):
    """The storage layer on the VM's host (xapi_xenops vbd_plug -> xenopsd storage.ml attach ->
    VDI.attach3 through ocaml/xapi/storage_mux_reg.ml of_sr). An SR with no plugged PBD there
    has no registered plugin: No_storage_plugin_for_sr, which xenopsd turns into its
    Internal_error (xenops_task.ml marshal_exn) and xapi_xenops transform_xenops_exn into
    INTERNAL_ERROR."""
    vdi = ctx.db.raw("VDI", vbd_rec["VDI"])
    sr = ctx.db.raw("SR", vdi["SR"])
    if not _sr_plugged_on(ctx, vdi["SR"], host.ref):
        raise XapiError(
            "INTERNAL_ERROR",
            "xenopsd internal error: Storage_error "
            "([S(No_storage_plugin_for_sr);S(%s)])" % sr["uuid"],
        )
    ctx.sim.sm.vdi_attach(host, sr, vdi)


# ------------------------------------------------------------------- VM
def _can_boot_here(ctx, vm, host_ref):
    """xen-api ocaml/xapi/xapi_vm_helpers.ml assert_can_boot_here, the parts modelled:
    host live (host_metrics.live), host enabled, every disk's SR plugged on the host."""
    host = ctx.db.raw("host", host_ref)
    metrics = host["metrics"]
    if not (ctx.db.exists("host_metrics", metrics) and ctx.db.raw("host_metrics", metrics)["live"]):
        raise XapiError("HOST_NOT_LIVE")
    if not ctx.db.raw("VM", vm)["is_control_domain"] and not host["enabled"]:
        raise XapiError("HOST_DISABLED", host_ref)
    for vbd in ctx.db.find("VBD", VM=vm):
        sr = _vbd_sr(ctx, ctx.db.raw("VBD", vbd))
        if sr and not _sr_plugged_on(ctx, sr, host_ref):
            raise XapiError("VM_REQUIRES_SR", vm, sr)


def _choose_host(ctx, vm):
    """xapi_vm_helpers.ml choose_host_for_vm (no WLB) / xapi_vm_placement.ml select_host: the
    affinity host if the VM can boot there, else another host it can boot on (real picks at
    random; here the first in pool order), else NO_HOSTS_AVAILABLE []."""
    affinity = ctx.db.raw("VM", vm)["affinity"]
    order = [h.ref for h in ctx.sim.hosts]
    if affinity in order:
        order.remove(affinity)
        order.insert(0, affinity)
    for host in order:
        try:
            _can_boot_here(ctx, vm, host)
            return host
        except XapiError:
            continue
    raise XapiError("NO_HOSTS_AVAILABLE")


def _assert_startable(ctx, vm):
    """message_forwarding.ml VM.start: with_vm_operation (xapi_vm_lifecycle.ml: power state
    first), then with_vbds_marked ~op:`attach (every VBD through valid_operations), then
    ensure_domain_type_is_specified (derived from HVM_boot_policy when unspecified)."""
    rec = ctx.db.raw("VM", vm)
    if rec["power_state"] != "Halted":
        raise _bad_power(vm, "halted", rec["power_state"])
    if rec["is_a_template"]:
        raise XapiError(
            "OPERATION_NOT_ALLOWED", "This operation is not allowed on templates or control domains"
        )
    for vbd in ctx.db.find("VBD", VM=vm):
        _check_vbd(ctx, vbd, "attach")
    if rec["domain_type"] == "unspecified":
        rec["domain_type"] = "pv" if rec["HVM_boot_policy"] == "" else "hvm"


def _start(ctx, vm, host_ref):
    """Boot on host_ref: attach every disk (xapi_xenops.ml MD.of_vbd for device names), then
    the running-domain records: VM_metrics.current_domain_type, and VM_guest_metrics when the
    guest's agent reports (self.guest_agents in sim.py)."""
    rec = ctx.db.raw("VM", vm)
    host = ctx.sim.host(host_ref)
    vbds = [ctx.db.raw("VBD", v) for v in ctx.db.find("VBD", VM=vm)]
    names = [_device_of(rec, v) for v in vbds]
    attached = []
    try:
        for v in vbds:
            if not v["empty"]:
                _attach_on(ctx, v, host)
                attached.append(v)
    except XapiError:
        for v in attached:
            _detach_vdi(ctx, v, host)
        raise
    for v, name in zip(vbds, names):
        v["currently_attached"] = True
        v["device"] = name
    rec.update(
        {
            "power_state": "Running",
            "resident_on": host_ref,
            "domid": str(max([int(r["domid"]) for r in ctx.db.tables["VM"].values()] + [0]) + 1),
        }
    )
    if not ctx.db.exists("VM_metrics", rec["metrics"]):
        rec["metrics"] = ctx.db.create("VM_metrics", {})
    ctx.db.raw("VM_metrics", rec["metrics"]).update(
        {"current_domain_type": rec["domain_type"], "hvm": rec["domain_type"] == "hvm"}
    )
    agent = ctx.sim.guest_agents.get(vm)
    if agent is not None:
        _agent_reports(ctx.sim, vm, rec["domid"], agent)


def _agent_reports(sim, vm, domid, agent):
    """VM_guest_metrics appear when the guest's agent first writes its data to xenstore
    (xen-api ocaml/xapi/xapi_guest_agent.ml all: the record is made on the first report),
    seconds to minutes after the domain starts on a host: sim.guest_agent_delay seconds here
    (xapisim.set_guest_agent_delay). Until then an HVM guest has no PV drivers as far as
    xapi_vbd_helpers.ml knows: VM_MISSING_PV_DRIVERS for a hot-plug."""

    def report():
        with sim.db.lock:
            if not sim.db.exists("VM", vm):
                return
            rec = sim.db.raw("VM", vm)
            if rec["power_state"] != "Running" or rec["domid"] != domid:
                return  # that domain is gone
            if not sim.db.exists("VM_guest_metrics", rec["guest_metrics"]):
                rec["guest_metrics"] = sim.db.create("VM_guest_metrics", dict(agent))

    if sim.guest_agent_delay <= 0:
        report()
    else:
        timer = threading.Timer(sim.guest_agent_delay, report)
        timer.daemon = True
        timer.start()


@message("VM.start")
def vm_start(ctx, vm, start_paused, force):
    _assert_startable(ctx, vm)
    _start(ctx, vm, _choose_host(ctx, vm))


@message("VM.start_on")
def vm_start_on(ctx, vm, host, start_paused, force):
    rec = ctx.db.raw("VM", vm)
    ctx.db.raw("host", host)
    # message_forwarding.ml VM.start_on: assert_matches_control_domain_affinity comes first.
    if rec["is_control_domain"] and rec["affinity"] not in (NULL, host):
        raise XapiError(
            "OPERATION_NOT_ALLOWED",
            "Cannot boot a control domain on a host different from its affinity",
        )
    _assert_startable(ctx, vm)
    _can_boot_here(ctx, vm, host)  # reserve_memory_for_vm
    _start(ctx, vm, host)


@message("VM.set_domain_type")
def vm_set_domain_type(ctx, vm, value):
    """xen-api ocaml/xapi/xapi_vm.ml set_domain_type: takes effect at the next start; also
    sets HVM_boot_policy (xapi_vm_helpers.ml derive_hvm_boot_policy)."""
    rec = ctx.db.raw("VM", vm)
    value = _enum("domain_type", value)
    if value == "unspecified":
        raise XapiError("INVALID_VALUE", "domain_type", value)
    rec["domain_type"] = value
    rec["HVM_boot_policy"] = "BIOS order" if value == "hvm" else ""


@message("VM.create")
def vm_create(ctx, rec):
    """xen-api ocaml/xapi/xapi_vm.ml create: a Halted VM whatever power state is asked (a
    Suspended one needs the suspend VDI, last booted record and CPU flags, which are not
    modelled: refused as xapi refuses them missing; the error names no ref), its metrics,
    a mac_seed; the domain type derived from HVM_boot_policy when unspecified
    (xapi_vm_helpers.ml derive_domain_type). Other checks wait for VM.start."""
    rec = require_fields("VM", rec)
    power = str(rec.pop("power_state", "Halted")).lower()
    if power == "suspended":
        raise XapiError("VM_BAD_POWER_STATE", NULL, "halted", power)
    domain_type = _enum("domain_type", rec.pop("domain_type", "unspecified"))
    if domain_type == "unspecified":
        domain_type = "hvm" if rec["HVM_boot_policy"] else "pv"
    other_config = dict(rec.pop("other_config"))
    other_config.setdefault("mac_seed", str(uuidlib.uuid4()))
    metrics = ctx.db.create("VM_metrics", {"current_domain_type": "unspecified", "hvm": False})
    return ctx.db.create(
        "VM",
        dict(
            rec,
            power_state="Halted",
            domain_type=domain_type,
            other_config=other_config,
            resident_on=NULL,
            domid="-1",
            metrics=metrics,
        ),
    )


@message("VM.destroy")
def vm_destroy(ctx, vm):
    """message_forwarding.ml VM.destroy -> xapi_vm_lifecycle.ml (destroy needs Halted or
    Suspended; dom0 refused) -> xapi_vm_helpers.ml destroy: VBDs and metrics records go, the
    VDIs stay."""
    rec = ctx.db.raw("VM", vm)
    if rec["power_state"] not in ("Halted", "Suspended"):
        raise _bad_power(vm, "halted, suspended", rec["power_state"])
    if rec["is_control_domain"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
    if rec["other_config"].get("default_template") == "true":
        raise XapiError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE")
    for vbd in ctx.db.find("VBD", VM=vm):
        ctx.db.destroy("VBD", vbd)
    for cls, ref in (("VM_metrics", rec["metrics"]), ("VM_guest_metrics", rec["guest_metrics"])):
        if ctx.db.exists(cls, ref):
            ctx.db.destroy(cls, ref)
    ctx.sim.guest_agents.pop(vm, None)
    ctx.db.destroy("VM", vm)


# Helpers.Policy.standard (helpers.ml Repeat_with_uniform_backoff): tried again for 2 hours.
STANDARD_WAIT = 7200.0
# xapi waits 1 to 20 s (uniformly) between tries; the simulator looks more often.
RETRY_EVERY = 0.05


@message("VM.pool_migrate")
def vm_pool_migrate(ctx, vm, host_ref, options):
    """message_forwarding.ml VM.pool_migrate: with_vm_operation ~op:`pool_migrate with the
    default policy (Helpers.retry, Policy.standard): while another operation holds the VM
    (VM.call_host_plugin's call_plugin, allowed concurrently with nothing) the call waits and
    tries again, cancellable meanwhile (TASK_CANCELLED); after two hours it fails with the
    OTHER_OPERATION_IN_PROGRESS it met. Then the migration, under the database lock."""
    deadline = time.time() + STANDARD_WAIT
    signal = ctx.sim.tasks.cancel_signals.get(ctx.task)
    while True:
        with ctx.db.lock:
            ops = ctx.db.raw("VM", vm)["current_operations"]
            if not ops:
                return _pool_migrate(ctx, vm, host_ref, options)
            task, op = sorted(ops.items())[0]
        if time.time() >= deadline:
            raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
        if signal is not None and signal.wait(RETRY_EVERY):
            raise XapiError("TASK_CANCELLED", ctx.task)
        if signal is None:
            time.sleep(RETRY_EVERY)


def _pool_migrate(ctx, vm, host_ref, options):
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


@message("host.evacuate")
def host_evacuate(ctx, host_ref, network=NULL, evacuate_batch_size=0):
    """xen-api ocaml/xapi/xapi_host.ml evacuate / compute_evacuation_plan_no_wlb: the targets
    are the other enabled hosts; a VM goes only if it can boot on *every* target
    (assert_can_boot_here over target_hosts: a disk whose SR is not plugged on one of them
    is VM_REQUIRES_SR), and the first error of the plan is raised before anything moves.
    Each VM then goes by VM.pool_migrate (live) to its planned host. Modelled: no HA
    (unprotected-VM check), no memory binpack (the first target in pool order), no WLB."""
    ctx.db.raw("host", host_ref)
    targets = [
        h.ref for h in ctx.sim.hosts if h.ref != host_ref and ctx.db.raw("host", h.ref)["enabled"]
    ]
    vms = [
        v
        for v in ctx.db.find("VM", resident_on=host_ref)
        if not ctx.db.raw("VM", v)["is_control_domain"]
    ]
    plan = []
    for vm in vms:
        if not targets:
            raise XapiError("NO_HOSTS_AVAILABLE", vm)
        for target in targets:
            _can_boot_here(ctx, vm, target)
        plan.append((vm, targets[0]))
    for vm, target in plan:
        _pool_migrate(ctx, vm, target, {"live": "true"})


def ha_host_failed(ctx, host_ref):
    """What HA does when a host leaves the live set (xen-api ocaml/xapi/
    xapi_ha_vm_failover.ml restart_auto_run_vms): host_metrics.live false, every VM resident
    there forced to Halted (Xapi_vm_lifecycle.force_state_reset), then the protected VMs
    (ha_always_run and ha_restart_priority "restart", Helpers.vm_should_always_run) started
    again with VM.start on a host they can boot on. A protected VM that is not agile
    (Agility: a disk's SR not plugged on every enabled host) is pinned by the real planner
    to one host (host_of_non_agile_vm); here, stricter, it is not restarted at all.
    Returns {vm ref: host ref or "" when not restarted}."""
    host = ctx.db.raw("host", host_ref)
    ctx.db.raw("host_metrics", host["metrics"])["live"] = False
    reset = [
        v
        for v in ctx.db.find("VM", resident_on=host_ref)
        if not ctx.db.raw("VM", v)["is_control_domain"]
    ]
    for vm in reset:
        rec = ctx.db.raw("VM", vm)
        for vbd in ctx.db.find("VBD", VM=vm):
            ctx.db.raw("VBD", vbd)["currently_attached"] = False
        rec.update({"power_state": "Halted", "resident_on": NULL, "domid": "-1"})
        if ctx.db.exists("VM_guest_metrics", rec["guest_metrics"]):
            ctx.db.destroy("VM_guest_metrics", rec["guest_metrics"])
        rec["guest_metrics"] = NULL
    out = {}
    for vm in reset:
        rec = ctx.db.raw("VM", vm)
        if not (rec["ha_always_run"] and rec["ha_restart_priority"] == "restart"):
            continue
        out[vm] = ""
        if not _agile(ctx, vm):
            continue
        try:
            _assert_startable(ctx, vm)
            target = _choose_host(ctx, vm)
            _start(ctx, vm, target)
            out[vm] = target
        except XapiError:
            pass  # ha_protected_vm_restart_failed: an alert, the VM stays halted
    return out


def _agile(ctx, vm):
    """xen-api ocaml/xapi/agility.ml is_sr_properly_shared for each disk: the SR shared and
    plugged on every enabled host."""
    enabled = set(h.ref for h in ctx.sim.hosts if ctx.db.raw("host", h.ref)["enabled"])
    for vbd in ctx.db.find("VBD", VM=vm):
        v = ctx.db.raw("VBD", vbd)
        sr = _vbd_sr(ctx, v)
        if not sr:
            continue
        if not ctx.db.raw("SR", sr)["shared"]:
            return False
        if any(not _sr_plugged_on(ctx, sr, h) for h in enabled):
            return False
    return True


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
    # The domain is gone: its guest metrics go (xapi_vm_helpers.ml delete_guest_metrics).
    if ctx.db.exists("VM_guest_metrics", rec["guest_metrics"]):
        ctx.db.destroy("VM_guest_metrics", rec["guest_metrics"])
    rec["guest_metrics"] = NULL
    if ctx.db.exists("VM_metrics", rec["metrics"]):
        ctx.db.raw("VM_metrics", rec["metrics"])["current_domain_type"] = "unspecified"


def _used_devices(ctx, vm):
    """xapi_vm_helpers.ml all_used_VBD_devices: both readings of every VBD's device and
    userdevice."""
    used = set()
    for vbd in ctx.db.find("VBD", VM=vm):
        v = ctx.db.raw("VBD", vbd)
        for name in (v["device"], v["userdevice"]):
            used.update(devices.possible(name))
    return used


def _allowed_devices(ctx, vm, vbd_type):
    """xapi_vm_helpers.ml allowed_VBD_devices (will_have_qemu = VM.domain_type hvm)."""
    rec = ctx.db.raw("VM", vm)
    candidates = devices.allowed(rec["domain_type"] == "hvm", rec["is_control_domain"], vbd_type)
    if candidates is None:
        return None
    used = _used_devices(ctx, vm)
    return [d for d in candidates if d not in used]


@message("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(ctx, vm):
    # xen-api ocaml/xapi/xapi_vm.ml get_allowed_VBD_devices: disk numbers of the Disk list.
    return [str(devices.disk(d)) for d in _allowed_devices(ctx, vm, "Disk")]


# ------------------------------------------------------------------- VBD
_VDI_TYPES_FOR_VBD = (
    "system",
    "user",
    "ephemeral",
    "suspend",
    "crashdump",
    "metadata",
    "rrd",
    "pvs_cache",
)


@message("VBD.create")
def vbd_create(ctx, rec):
    """xen-api ocaml/xapi/xapi_vbd.ml create, in its order of checks."""
    rec = require_fields("VBD", rec)
    vm = rec["VM"]
    vm_rec = ctx.db.raw("VM", vm)
    vdi = rec["VDI"]
    vbd_type = _enum("vbd_type", rec["type"])
    mode = _enum("vbd_mode", rec["mode"])
    vdi_rec = None
    if not rec["empty"]:
        vdi_rec = ctx.db.raw("VDI", vdi)
        if vdi_rec["type"] not in _VDI_TYPES_FOR_VBD:
            raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, vdi_rec["type"])
    if vbd_type == "CD" and mode != "RO":
        raise XapiError("VBD_CDS_MUST_BE_READONLY")
    if rec["empty"] and vbd_type != "CD":
        raise XapiError("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
    if mode == "RW" and (vdi_rec or ctx.db.raw("VDI", vdi))["read_only"]:
        raise XapiError("VDI_READONLY", vdi)
    if rec["empty"]:
        vdi = NULL
    possibilities = _allowed_devices(ctx, vm, vbd_type)
    if possibilities is None:
        raise XapiError("NOT_IMPLEMENTED", "VBD of type 'floppy' is not supported on PV domain")
    userdevice = rec["userdevice"]
    if not devices.valid_userdevice(userdevice, vbd_type):
        raise XapiError("INVALID_DEVICE", userdevice)
    if userdevice == "autodetect":
        if not possibilities:
            raise XapiError("INVALID_DEVICE", userdevice)
        first = possibilities[0]
        userdevice = devices.linux(first) if vbd_type == "Floppy" else str(devices.disk(first))
    if set(devices.possible(userdevice)) & _used_devices(ctx, vm):
        raise XapiError("DEVICE_ALREADY_EXISTS", userdevice)
    suspended = vm_rec["power_state"] == "Suspended"
    other_config = dict(rec["other_config"])
    if vdi_rec and "backend-kind" in vdi_rec["sm_config"]:
        other_config["backend-kind"] = vdi_rec["sm_config"]["backend-kind"]
    return ctx.db.create(
        "VBD",
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": userdevice,
            "bootable": rec["bootable"],
            "mode": mode,
            "type": vbd_type,
            "empty": rec["empty"],
            "unpluggable": rec.get("unpluggable", True),
            "other_config": other_config,
            "qos_algorithm_type": rec["qos_algorithm_type"],
            "qos_algorithm_params": dict(rec["qos_algorithm_params"]),
            # device and currently_attached are honoured only for a suspended VM.
            "device": rec.get("device", "") if suspended else "",
            "currently_attached": bool(rec.get("currently_attached", False))
            if suspended
            else False,
        },
    )


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
    """message_forwarding.ml VBD.plug: valid_operations on the master, then on resident_on
    xapi_vbd.ml plug (CA-83260: no RO disk on a guest with qemu, after those checks), then
    xapi_xenops.ml vbd_plug (device name, storage attach)."""
    _check_vbd(ctx, vbd, "plug")
    rec = ctx.db.raw("VBD", vbd)
    vm_rec = ctx.db.raw("VM", rec["VM"])
    forward_to(ctx, ctx.sim.host(vm_rec["resident_on"]))  # forward_vm_op: do_op_on
    if _domain_type(ctx, vm_rec) == "hvm" and rec["type"] != "CD" and rec["mode"] == "RO":
        raise XapiError("DISK_VBD_MUST_BE_READWRITE_FOR_HVM", vbd)
    name = _device_of(vm_rec, rec)
    if not rec["empty"]:
        _attach_on(ctx, rec, ctx.sim.host(vm_rec["resident_on"]))
    rec["currently_attached"] = True
    rec["device"] = name


@message("VBD.unplug", "VBD.unplug_force")
def vbd_unplug(ctx, vbd):
    """valid_operations for unplug: VBD_NOT_UNPLUGGABLE, then DEVICE_ALREADY_DETACHED on a
    running VM or VM_BAD_POWER_STATE on any other, then the HVM/PV-driver refusals, then
    VDI_NOT_MANAGED."""
    _check_vbd(ctx, vbd, "unplug")
    rec = ctx.db.raw("VBD", vbd)
    vm = ctx.db.raw("VM", rec["VM"])
    forward_to(ctx, ctx.sim.host(vm["resident_on"]))  # forward_vm_op: do_op_on
    if not rec["empty"]:
        _detach_vdi(ctx, rec, ctx.sim.host(vm["resident_on"]))
    rec["currently_attached"] = False


@message("VBD.destroy")
def vbd_destroy(ctx, vbd):
    rec = ctx.db.raw("VBD", vbd)
    if rec["currently_attached"]:
        vm_uuid = ctx.db.raw("VM", rec["VM"])["uuid"]
        raise XapiError(
            "OPERATION_NOT_ALLOWED", "VBD '%s' still attached to '%s'" % (rec["uuid"], vm_uuid)
        )
    ctx.db.destroy("VBD", vbd)
