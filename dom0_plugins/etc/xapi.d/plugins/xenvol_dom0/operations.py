"""The plugin's functions. Each takes (session, args) with args a string->string map and
returns a JSON string; docs/plugin-api.md is their contract, with xe examples."""

import os

import XenAPI

from . import call as call_mod
from . import (
    check,
    integrate,
    journal,
    log,
    marks,
    opid,
    paths,
    placement,
    policy,
    recovery,
    settings,
    storage,
    xsecret,
)
from . import gc as gc_mod
from . import probe as probe_mod
from . import vbd as vbds
from .call import NULL, Call
from .check import Fields, no_control_characters, parse_json, too_large
from .errors import (
    DEVICE_IN_USE,
    INVALID_ARGUMENT,
    INVALID_CONNECTION_INFO,
    POLICY_REFUSED,
    VDI_NOT_FOUND,
    VM_NOT_FOUND,
    WRONG_HOST,
    XenvolError,
    invalid,
    vanished,
)
from .redact import SCRUB, is_secret_key, is_secret_ref
from .registry import Registry
from .txn import Steps
from .version import API_LEVEL, VERSION

# A concurrent release on another host can forget an SR between our steps; such a call is
# rolled back and tried again, at most this many times in all.
ATTEMPTS = 3
OP_MARK = marks.OP


def version(session, args):
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    return {
        "plugin": "xenvol",
        "version": VERSION,
        "api_level": API_LEVEL,
        "wait_limit": settings.wait_limit(settings.read()[0]),
        "config": settings.state(),
    }


def check_config(session, args):
    """/etc/xenvol/xenvol.conf as this host's plugin reads it: every problem, and the
    settings in force (the defaults where the file says nothing)."""
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    found, state, problems = settings.read()
    return {
        "file": paths.config_file(),
        "state": state,
        "valid": state != "invalid",
        "problems": [dict(p, message=settings.describe(p)) for p in problems],
        "settings": found if state != "invalid" else None,
    }


def list_drivers(session, args):
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    return Registry().describe()


# ---------------------------------------------------------------------- helpers
def _connection_info(a, required=True):
    """(driver_volume_type, the parsed document), its secrets remembered for scrubbing; the
    document is judged further by _driver_and_config, once the type is known to be served."""
    if not a.has("connection_info"):
        if required:
            raise invalid("connection_info", "is required", INVALID_CONNECTION_INFO)
        return None
    text = a.raw("connection_info")
    if not isinstance(text, str):
        raise invalid("connection_info", "must be a JSON string", INVALID_ARGUMENT)
    error = too_large(text, "connection_info")
    if error:
        raise error
    # JSON whitespace (a pretty-printed file sent with xe host-call-plugin) is fine; control
    # characters inside its strings are not.
    info = parse_json(text, "connection_info", INVALID_CONNECTION_INFO)
    # Before anything can echo a value: secrets under secret keys and inside strings.
    SCRUB.remember_in(info)
    ci = Fields(info, "connection_info")
    volume_type = ci.string("driver_volume_type", max_len=64)
    return volume_type, info


def _driver_and_config(call, volume_type, info, read_secrets=False):
    """The driver and its Config. A type no driver serves, or a volume its SR cannot serve
    (driver.refuse_unsupported), is refused before any field is judged; then secret values
    (read_secrets: the XAPI secrets given too, for the calls that use them), control
    characters, and the driver's own checks: the order a client's secrets do not change."""
    driver = Registry().get(volume_type)
    ci = Fields(info, "connection_info")
    if "data" not in info:
        raise ci.bad("data", "is required")
    data = Fields(info["data"], "data")
    data.envelope = info
    driver.refuse_unsupported(data)
    xsecret.check_clear(data, volume_type)
    if read_secrets:
        call.secret_values = xsecret.check_given(call, data)
    no_control_characters(info, "connection_info")
    cfg = driver.validate(data)
    cfg["host_uuid"] = call.host_uuid
    cfg["driver_volume_type"] = volume_type
    # The volume's name for its VDI (Cinder's display name, when the caller adds it).
    name = data.data.get("display_name")
    if isinstance(name, str) and name.strip():
        cfg["display_name"] = data.string("display_name", max_len=128)
    return driver, cfg, data


def _admit(call, driver, cfg, data, vm=None, mode=None):
    """The checks before anything changes: no secret left unused, the policy on the SR and
    on optional keys. Returns (check_vdi(vdi), ignored) for the connect step."""
    for key in sorted(data.data):
        if (
            (is_secret_key(key) or is_secret_ref(key))
            and key not in data.used
            and data.data[key] not in (None, "")
        ):
            raise data.bad(
                key,
                "is a secret the %s driver does not use; xenvol never ignores "
                "a secret" % cfg.driver_volume_type,
            )
    multiattach, ignored = policy.check_data(call, data, data.envelope)
    policy.check_sr(call, cfg)
    ignored = list(cfg.get("ignored") or []) + ignored

    def check_vdi(vdi):
        policy.check_vdi(call, vdi, vm, mode, multiattach)

    return check_vdi, ignored


def _vm(call, a):
    """The VM given as vm_uuid, or as vm (a uuid or a name label, resolved here so that the
    client makes no lookup): (ref, uuid). One filtered read, whatever the pool's size."""
    field = "vm" if a.has("vm") and not a.has("vm_uuid") else "vm_uuid"
    given = a.uuid("vm_uuid") if field == "vm_uuid" else a.string("vm", max_len=255)
    found = {}
    if check.is_uuid(given):
        found = call.do(
            "looking up the VM",
            call.x.VM.get_all_records_where,
            'field "uuid" = "%s"' % given.lower(),
        )
    if not found and field == "vm":
        for ref in call.do("looking up the VM", call.x.VM.get_by_name_label, given):
            rec = call.do("reading the VM", call.x.VM.get_record, ref)
            if not rec["is_a_template"] and not rec["is_control_domain"]:
                found[ref] = rec
        if len(found) > 1:
            raise invalid(
                "vm", "%d VMs are named %r; give its uuid" % (len(found), given), INVALID_ARGUMENT
            )
    if not found:
        raise XenvolError(VM_NOT_FOUND, "%s: no VM %s" % (field, given), field=field, vm_uuid=given)
    vm, rec = list(found.items())[0]
    if rec["is_a_template"]:
        raise invalid(field, "%s is a template, not a VM" % given, INVALID_ARGUMENT)
    if rec["is_control_domain"]:
        raise XenvolError(
            POLICY_REFUSED,
            "%s: %s is a control domain (dom0); xenvol "
            "never attaches volumes to it" % (field, given),
            field=field,
            vm_uuid=rec["uuid"],
        )
    call.vm_records[vm] = rec
    if a.raw("route") == "strict":
        _check_route(call, vm, rec)
    return vm, rec["uuid"]


def _home(call, rec):
    """Where a VM's work runs (the client's former host_for_vm): where it runs, else where it
    would start (affinity), else the pool master."""
    x = call.x
    if rec["power_state"] in ("Running", "Paused") and rec["resident_on"] != NULL:
        return rec["resident_on"]
    if rec["affinity"] != NULL:
        try:
            x.host.get_uuid(rec["affinity"])
            return rec["affinity"]
        except XenAPI.Failure:
            pass
    return x.pool.get_master(x.pool.get_all()[0])


def _check_route(call, vm, rec):
    """route=strict: refuse work that belongs to another host, naming it, so that a client
    with no lookups of its own (or a stale cache) re-sends there."""
    home = _home(call, rec)
    if home != call.host:
        host_uuid = call.do("reading the host", call.x.host.get_uuid, home)
        raise XenvolError(
            WRONG_HOST,
            "VM %s runs on host %s; call its plugin there" % (rec["uuid"], host_uuid),
            host_ref=home,
            host_uuid=host_uuid,
            vm_ref=vm,
            vm_uuid=rec["uuid"],
        )


def _route_info(call, vm):
    rec = call.vm_records.get(vm) or {}
    return {"vm_ref": vm, "host_ref": call.host, "vm_running": rec.get("power_state") == "Running"}


def _connect_then(call, driver, cfg, lock_of, then):
    """Connect the volume (storage.ensure_sr locks the SR only for its set-up), then run
    then(vdi, steps) for the rest of the call under the host lock lock_of(vdi) names; on
    failure every recorded step is rolled back (then's under that lock, so that no call
    waiting on it meets a half-undone state). A call that met an object a concurrent release
    removed is rolled back and tried again."""
    for attempt in range(ATTEMPTS):
        steps = Steps(call)
        try:
            try:
                connected = driver.connect_volume(call, cfg, steps)
                sr, vdi = connected
                # A driver that returns a (sr, vdi) of its own: in_use checks the SR alone.
                standing = getattr(connected, "standing", None) or storage.Standing(sr, None)
                with call.lock(lock_of(vdi)):
                    try:
                        result = then(vdi, standing, steps)
                    except Exception as e:
                        _rollback(call, driver, steps, e)
                        raise
            except Exception as e:
                _rollback(call, driver, steps, e)
                raise
            steps.commit()
            return result
        except (XenvolError, XenAPI.Failure) as e:
            if not _released_under_us(e) or attempt == ATTEMPTS - 1:
                raise
            log.step("a concurrent release took the SR away; trying again")


def _released_under_us(e):
    """The errors a concurrent release leaves a call to meet: the SR, PBD or VDI gone
    (HANDLE_INVALID); the SR's PBD unplugged where xapi runs its SM calls (SR_HAS_NO_PBDS:
    xen-api sm.ml assert_pbd_is_plugged) or on the VM's host at VBD.plug (xenopsd's
    Storage_error No_storage_plugin_for_sr, which xapi answers as INTERNAL_ERROR)."""
    if vanished(e):
        return True
    details = getattr(e, "details", None)
    if isinstance(details, dict):
        details = details.get("xapi_error", [])
    details = [str(d) for d in details or []]
    code = details[0] if details else ""
    return code == "SR_HAS_NO_PBDS" or (
        code == "INTERNAL_ERROR" and "No_storage_plugin_for_sr" in " ".join(details[1:])
    )


def _rollback(call, driver, steps, error):
    failed = driver.rollback(call, steps)
    if failed and isinstance(error, XenvolError):
        error.details["rollback_incomplete"] = failed


def _describe(call, vbd, rec=None):
    """What an attachment is; records this call has read already are not asked again."""
    x = call.x
    rec = rec or x.VBD.get_record(vbd)
    vdi = rec["VDI"]
    vdi_rec = call.records.get(vdi)
    if vdi != NULL and vdi_rec is None:
        vdi_rec = call.records[vdi] = x.VDI.get_record(vdi)
    sr = vdi_rec["SR"] if vdi_rec else NULL
    if sr != NULL and sr not in call.uuids:
        # The record: its ownership marks serve the release that may follow.
        call.sr_records[sr] = x.SR.get_record(sr)
        call.uuids[sr] = call.sr_records[sr]["uuid"]
    vm_rec = call.vm_records.get(rec["VM"])
    return {
        "vbd_uuid": rec["uuid"],
        "vm_uuid": vm_rec["uuid"] if vm_rec else x.VM.get_uuid(rec["VM"]),
        "vdi_uuid": vdi_rec["uuid"] if vdi_rec else "",
        "sr_uuid": call.uuids[sr] if sr != NULL else "",
        "userdevice": rec["userdevice"],
        "device": rec["device"] or vbds.device_name(vbds.device_number(rec["userdevice"])),
        "plugged": rec["currently_attached"],
        "mode": rec["mode"].lower(),
        "driver_volume_type": rec["other_config"].get(marks.DRIVER, ""),
        "volume_id": rec["other_config"].get(marks.VOLUME_ID, ""),
    }


# ---------------------------------------------------------------------- connect / disconnect
def connect_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info", "placement"))
    volume_type, info = _connection_info(a)
    driver, cfg, data = _driver_and_config(call, volume_type, info, read_secrets=True)
    cfg["placement"] = integrate.placement_arg(a, call.settings)
    check_vdi, ignored = _admit(call, driver, cfg, data)

    def claim(vdi, standing, steps):
        check_vdi(vdi)
        integrate.name_vdi(call, vdi, cfg, volume_type, steps)
        _claim(call, vdi, standing, steps)
        return {
            "sr_uuid": driver.sr_uuid(cfg),
            "vdi_uuid": _vdi_uuid(call, vdi),
            "host_uuid": call.host_uuid,
            "driver_volume_type": volume_type,
        }

    # Connects of one volume on this host, one at a time: a rollback of one never drops a
    # claim another has just counted on.
    result = _connect_then(call, driver, cfg, lambda vdi: "vdi-" + _vdi_uuid(call, vdi), claim)
    if ignored:
        result["ignored"] = ignored
    return result


def _vdi_uuid(call, vdi):
    rec = call.records.get(vdi)
    return rec["uuid"] if rec else call.do("reading the VDI", call.x.VDI.get_uuid, vdi)


def _claim(call, vdi, standing, steps):
    """Mark the VDI as held by this host, so no release forgets its SR."""
    x = call.x
    claim = storage.CONNECTED + call.host_uuid
    if claim not in call.do("reading the VDI", x.VDI.get_other_config, vdi):
        with steps.change("record connection", "remove_claim", vdi=vdi, key=claim):
            call.do("recording the connection", x.VDI.add_to_other_config, vdi, claim, "true")
    storage.in_use(call, standing)


def disconnect_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info", "sr_uuid", "vdi_uuid"))
    found = _connection_info(a, required=False)
    if found:
        driver, cfg, _data = _driver_and_config(call, *found)
        sr_uuid = driver.sr_uuid(cfg)
        sr = call.find("SR", sr_uuid)
        vdi = driver.locate_vdi(call, sr, cfg) if sr else None
    else:
        if not a.has("sr_uuid"):
            raise invalid(
                "connection_info", "give connection_info, or sr_uuid and vdi_uuid", INVALID_ARGUMENT
            )
        sr_uuid, vdi_uuid = a.uuid("sr_uuid"), a.uuid("vdi_uuid")
        sr, vdi = call.find("SR", sr_uuid), call.find("VDI", vdi_uuid)
    if sr is None:
        return {"sr_uuid": sr_uuid, "note": "not connected: no such SR"}
    with call.lock("sr-" + sr_uuid):
        steps = Steps(call)
        # Written before the claim goes: a call killed after it still releases the SR.
        n = steps.will("release SR %s" % sr_uuid, "release_sr", sr_uuid=sr_uuid)
        if vdi is not None:
            claim = storage.CONNECTED + call.host_uuid
            if claim in call.x.VDI.get_other_config(vdi):
                call.do(
                    "dropping the connection record",
                    call.x.VDI.remove_from_other_config,
                    vdi,
                    claim,
                )
        note = storage.release_sr(call, sr)
        steps.finished(n)
    return {"sr_uuid": sr_uuid, "note": note}


# ---------------------------------------------------------------------- attach / detach
def attach_volume(session, args):
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(
        ("connection_info", "vm_uuid", "vm", "route", "mountpoint", "mode", "hotplug", "placement")
    )
    if a.has("route"):
        a.choice("route", ("strict",))
    # The VM first: a WRONG_HOST answer (runner.run leaves the client's secrets for the host
    # it re-sends to) judges nothing else.
    vm, vm_uuid = _vm(call, a)
    volume_type, info = _connection_info(a)
    driver, cfg, data = _driver_and_config(call, volume_type, info, read_secrets=True)
    cfg["placement"] = integrate.placement_arg(a, call.settings)
    number = vbds.device_number(
        a.string("mountpoint", required=False, default="autodetect", max_len=64)
    )
    mode = a.choice("mode", ("rw", "ro"), "ro" if driver.read_only(cfg) else "rw")
    if mode == "rw" and driver.read_only(cfg):
        raise invalid(
            "mode", "the volume's access_mode is ro; it cannot be attached rw", INVALID_ARGUMENT
        )
    hotplug = a.boolean("hotplug", True)
    check_vdi, ignored = _admit(call, driver, cfg, data, vm, mode)
    vbd_marks = {vbds.MARK: "true", marks.HOST: call.host_uuid, marks.DRIVER: volume_type}
    # The op id that made the VBD: a detach given the same id, on any host, is refused.
    vbd_marks[OP_MARK] = call.op_id
    if cfg.get("volume_id"):
        vbd_marks[marks.VOLUME_ID] = cfg.volume_id
    # The VBD says which volume it is (a VBD has no name of its own).
    vbd_marks[marks.VOLUME_NAME] = integrate.vdi_name(
        dict(call.settings, vdi_name_tags=[]), cfg, volume_type
    )

    def attach(vdi, standing, steps):
        # The VM's disks and the volume's in one filtered read (the device choice and the
        # policy check), whatever the VM has.
        found = call.do(
            "listing the disks",
            call.x.VBD.get_all_records_where,
            'field "VM" = "%s" or field "VDI" = "%s"' % (vm, vdi),
        )
        call.vbd_records.update(found)
        call.vdi_vbds[vdi] = dict((v, r) for v, r in found.items() if r["VDI"] == vdi)
        call.vm_vbds[vm] = dict((v, r) for v, r in found.items() if r["VM"] == vm)
        for r in call.vm_vbds[vm].values():
            # The op id made another disk of this VM (on whichever host kept its result).
            if r["other_config"].get(OP_MARK) == call.op_id and r["VDI"] != vdi:
                raise opid.conflict(
                    call.op_id,
                    "attach_volume",
                    "already used by the attach_volume call that made VBD %s (another "
                    "volume); give this attach a new op_id" % r["uuid"],
                )
        check_vdi(vdi)
        integrate.name_vdi(call, vdi, cfg, volume_type, steps)
        return _attach_to_vm(
            call, vm, vdi, number, mode == "ro", hotplug, vbd_marks, standing, steps
        )

    result = _connect_then(call, driver, cfg, lambda vdi: "vm-" + vm_uuid, attach)
    result["host_uuid"] = call.host_uuid
    result["route"] = _route_info(call, vm)
    if ignored:
        result["ignored"] = ignored
    return result


# XAPI refuses a hot-plug into an HVM guest that cannot take one (xen-api
# ocaml/xapi/xapi_vbd_helpers.ml valid_operations): no PV drivers, or the guest says so.
_NO_HOTPLUG = (
    ("VM_MISSING_PV_DRIVERS",),
    ("OPERATION_NOT_ALLOWED", "VM states it does not support VBD hotplug."),
)
NOTE_NEXT_BOOT = (
    "not plugged: the guest cannot hot-plug disks (HVM without PV drivers); "
    "the disk appears at the VM's next start"
)


def _ro_on_hvm():
    # xen-api ocaml/xapi/xapi_vbd.ml plug (CA-83260) refuses RO disks on HVM guests, and at boot
    # qemu leaves RO disks out (xenopsd), so xenvol refuses them hot and cold alike.
    return invalid(
        "mode", "an HVM guest cannot take a read-only disk; attach it rw", INVALID_ARGUMENT
    )


def _attach_to_vm(call, vm, vdi, number, read_only, hotplug, vbd_marks, standing, steps):
    x = call.x
    # As read at the call's start: a VM that stopped since then refuses the plug
    # (VM_BAD_POWER_STATE), which leaves the disk for its next start, as for a halted VM.
    vm_rec = call.vm_records.get(vm) or call.do("reading the VM", x.VM.get_record, vm)
    running = vm_rec["power_state"] == "Running"
    vbd = vbds.find(call, vm, vdi)
    note = ""
    created = vbd is None
    if vbd is not None:
        note = "already attached"
        log.step(
            "volume already attached to the VM",
            userdevice=call.vbd_records[vbd]["userdevice"]
            if vbd in call.vbd_records
            else x.VBD.get_userdevice(vbd),
        )
    else:
        if read_only and vm_rec["domain_type"] == "hvm":
            raise _ro_on_hvm()
        for _try in range(5):
            userdevice = number if number is not None else vbds.choose_device(call, vm)
            vbd = vbds.create(
                call, vm, vdi, userdevice, read_only, vbd_marks, steps, explicit=number is not None
            )
            if vbd is not None:
                break
        else:
            raise XenvolError(DEVICE_IN_USE, "no free device after 5 attempts", field="mountpoint")
    storage.in_use(call, standing)
    if hotplug and running and (created or not x.VBD.get_currently_attached(vbd)):
        try:
            vbds.plug(call, vbd, steps)
        except XenvolError as e:
            refused = e.details.get("xapi_error", [])
            if refused[:1] == ["DISK_VBD_MUST_BE_READWRITE_FOR_HVM"]:
                raise _ro_on_hvm() from None
            if refused[:1] == ["VM_BAD_POWER_STATE"]:
                log.step("the VM stopped meanwhile; the disk waits for its next start")
                return _describe(call, vbd)
            if not any(refused[: len(c)] == list(c) for c in _NO_HOTPLUG):
                raise
            log.step("guest cannot hot-plug; leaving the disk for the next start", error=refused[0])
            note = NOTE_NEXT_BOOT
    out = _describe(call, vbd)
    if note:
        out["note"] = note
    return out


def detach_volume(session, args):
    call = Call(session)
    x = call.x
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("vm_uuid", "vm", "mountpoint", "vbd_uuid", "vdi_uuid", "route"))
    if a.has("route"):
        a.choice("route", ("strict",))
    # VBD records read once (filtered reads), and used for every step below.
    if a.has("vbd_uuid"):
        found = call.do(
            "looking up the disk",
            x.VBD.get_all_records_where,
            'field "uuid" = "%s"' % a.uuid("vbd_uuid"),
        )
        call.vbd_records.update(found)
        targets, field = sorted(found), "vbd_uuid"
    elif a.has("vdi_uuid"):
        vdi = call.find("VDI", a.uuid("vdi_uuid"))
        found = (
            call.do(
                "listing the volume's disks",
                x.VBD.get_all_records_where,
                'field "VDI" = "%s"' % vdi,
            )
            if vdi
            else {}
        )
        call.vbd_records.update(found)
        targets = [
            v for v, r in sorted(found.items()) if r["other_config"].get(vbds.MARK) == "true"
        ]
        field = "vdi_uuid"
    elif a.has("vm_uuid") or a.has("vm"):
        vm, _vm_uuid = _vm(call, a)
        number = vbds.device_number(a.string("mountpoint", max_len=64))
        if number is None:
            raise invalid(
                "mountpoint", "name the device to detach, not autodetect", INVALID_ARGUMENT
            )
        ref = vbds.at_device(call, vm, number)
        targets, field = ([ref] if ref else []), "mountpoint"
    else:
        raise invalid(
            "vbd_uuid", "give vbd_uuid, vdi_uuid, or vm_uuid and mountpoint", INVALID_ARGUMENT
        )
    if not targets:
        return {"detached": [], "note": "nothing to detach: not attached"}
    if a.raw("route") == "strict" and field != "mountpoint":
        vm = call.vbd_records[targets[0]]["VM"]
        call.vm_records[vm] = call.do("reading the VM", x.VM.get_record, vm)
        _check_route(call, vm, call.vm_records[vm])
    for ref in targets:
        made_by = (call.vbd_records.get(ref) or {}).get("other_config", {}).get(OP_MARK)
        if made_by == call.op_id:
            raise opid.conflict(
                call.op_id,
                "attach_volume",
                "already used by the attach_volume call that made this disk; give the detach "
                "a new op_id",
            )
    detached, notes = [], []
    for ref in targets:
        rec = call.vbd_records.get(ref) or x.VBD.get_record(ref)
        if rec["other_config"].get(vbds.MARK) != "true":
            raise invalid(
                field, "that disk was not attached by xenvol; detach it with xe", INVALID_ARGUMENT
            )
        described = _describe(call, ref, rec)
        # The last point a cancel stops the detach with nothing done; past it, the detach
        # goes to its end (nothing re-plugs a disk) and answers what it detached.
        call.checkpoint("detach VBD %s" % described["vbd_uuid"])
        call.op.irrevocable = "detaching VBD %s" % described["vbd_uuid"]
        if rec["currently_attached"]:
            # Before anything goes: a call killed here is a plain retry (the VBD is still
            # there, marked).
            log.step("unplugging VBD", vbd_uuid=described["vbd_uuid"])
            vbds.unplug(call, ref)
        steps = Steps(call)
        # What is still to release outlives the VBD: in the journal before the VBD goes, and
        # finished by the next call on this host if this one fails or dies after.
        sr_uuid = described["sr_uuid"]
        release = (
            steps.will("release SR %s" % sr_uuid, "release_sr", sr_uuid=sr_uuid)
            if sr_uuid
            else None
        )
        steps.will("destroy VBD %s" % described["vbd_uuid"], "finish_detach", vbd=ref)
        vbds.destroy(call, ref)
        steps.finished()
        detached.append(described)
        if sr_uuid:
            # The SR's ref from the VDI's record (an SR forgotten meanwhile is "already gone"
            # to release_sr).
            sr = (call.records.get(rec["VDI"]) or {}).get("SR") or call.find("SR", sr_uuid)
            if sr is not None:
                call.uuids[sr] = sr_uuid
                with call.lock("sr-" + sr_uuid):
                    notes.append(storage.release_sr(call, sr))
            steps.finished(release)
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
        if vm_ref is None and other.get(marks.HOST) != call.host_uuid:
            continue
        try:
            out.append(_describe(call, ref))
        except XenAPI.Failure:
            continue  # destroyed while we listed
    return {
        "host_uuid": call.host_uuid,
        "attachments": sorted(
            out,
            key=lambda d: (d["vm_uuid"], int(d["userdevice"]) if d["userdevice"].isdigit() else 0),
        ),
    }


# ---------------------------------------------------------------------- lifecycle
def recover(session, args):
    """Roll back (or finish) this host's dead operations; with `operation`, only that one,
    answering whether it is alive (what another host's plugin asks before it breaks a lease
    the operation holds). probe=true: answer without recovering."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("operation", "probe"))
    probe = a.boolean("probe", False)
    if a.has("operation"):
        op_id = _op_id(a, "operation")
        path = journal.path_of(op_id)
        alive = os.path.exists(path) and not journal.dead(path)
        if probe or alive or not os.path.exists(path):
            return {"operation": op_id, "alive": alive}
        # A recovery takes SR leases: they name an operation of its own (call.own_journal).
        with call_mod.own_journal(call):
            return {"operation": op_id, "alive": recovery.recover(call, path) == "alive"}
    if probe:
        return {
            "dead": [
                journal.op_id_of(p)
                for p in journal.journals()
                if journal.dead(p) and os.path.exists(p)  # not set aside as damaged
            ],
            "damaged": journal.damaged(),
        }
    if not journal.journals():
        return {"recovered": [], "failed": [], "damaged": journal.damaged()}
    with call_mod.own_journal(call):
        done = recovery.recover_dead(call, skip=call.journal.path)
    return {
        "recovered": sorted(journal.op_id_of(p) for p, r in done.items() if r == "recovered"),
        "failed": sorted(journal.op_id_of(p) for p, r in done.items() if r == "failed"),
        # Journals that cannot be read: set aside, kept for the operator, never run.
        "damaged": journal.damaged(),
    }


def cancel(session, args):
    """Ask a running operation of this host to stop at its next step and roll back."""
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("operation",))
    op_id = _op_id(a, "operation")
    if opid.finished(op_id):
        return {"operation": op_id, "state": "finished"}
    return {
        "operation": op_id,
        "state": "cancelling" if call_mod.cancel_mark(op_id) else "not running",
    }


def gc(session, args):
    """What xenvol left that nothing uses; removed only with apply=true. pool=true adds the
    pool-wide objects (ask one host for those)."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("apply", "pool"))
    return gc_mod.run(call, a.boolean("apply", False), a.boolean("pool", False))


def probe(session, args):
    """What `xenvol check` needs of this host's dom0, read-only (probe.py); pool=true adds
    the pool-wide leftovers gc would report (ask one host)."""
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("pool",))
    return probe_mod.probe(session, a.boolean("pool", False))


def smoke_volume(session, args):
    """`xenvol check --smoke`'s scratch file volume on this host: action=create|remove."""
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("action", "volume"))
    return probe_mod.smoke_volume(a.choice("action", ("create", "remove")), a.uuid("volume") or "")


# ---------------------------------------------------------------------- integrators
def extend_volume(session, args):
    """After the backend grew the volume: refresh, rescan, return the new size."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("connection_info", "vdi_uuid"))
    found = _connection_info(a, required=False)
    if found:
        driver, cfg, _data = _driver_and_config(call, *found)
        sr_uuid = driver.sr_uuid(cfg)
        sr = call.find("SR", sr_uuid)
        vdi = driver.locate_vdi(call, sr, cfg) if sr else None
    elif a.has("vdi_uuid"):
        vdi = call.find("VDI", a.uuid("vdi_uuid"))
        sr = call.x.VDI.get_SR(vdi) if vdi else None
        sr_uuid = call.x.SR.get_uuid(sr) if sr else ""
    else:
        raise invalid("connection_info", "give connection_info, or vdi_uuid", INVALID_ARGUMENT)
    if sr is None or vdi is None:
        raise XenvolError(
            VDI_NOT_FOUND,
            "the volume is not connected on this pool (attach or connect it first)",
            field="connection_info",
        )
    if not integrate.is_volume(call, vdi):
        raise XenvolError(
            POLICY_REFUSED,
            "vdi_uuid: %s is not a volume xenvol attached or connected" % call.x.VDI.get_uuid(vdi),
            field="vdi_uuid",
        )
    with call.lock("sr-" + sr_uuid):
        return integrate.extend(call, sr, vdi)


def connector(session, args):
    """This host as a storage initiator (os-brick's get_connector_properties)."""
    Fields(args, "", INVALID_ARGUMENT).reject_unknown(())
    out = integrate.connector(Call(session))
    # Each transport's own facts, from its driver (os-brick: one connector each).
    drivers = Registry().drivers.values()
    for driver in sorted(set(drivers), key=lambda d: type(d).__name__):
        out.update(driver.connector_properties())
    return out


def prepare_host(session, args):
    """Plug, on this host, the SRs of a VM's xenvol disks (before a migration here)."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("vm_uuid",))
    vm, vm_uuid = _vm(call, a)
    return {
        "host_uuid": call.host_uuid,
        "vm_uuid": vm_uuid,
        "sr_uuids": placement.prepare_host(call, vm),
    }


def release_host(session, args):
    """Drop this host's PBDs of a VM's xenvol SRs that nothing here needs (after the VM
    left, or after a failed migration here)."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("vm_uuid",))
    vm, vm_uuid = _vm(call, a)
    return {
        "host_uuid": call.host_uuid,
        "vm_uuid": vm_uuid,
        "released": placement.release_host(call, vm),
    }


def reconcile(session, args):
    """Pool-wide placement: PBDs on every enabled, live host (apply=true to make them)."""
    call = Call(session)
    a = Fields(args, "", INVALID_ARGUMENT)
    a.reject_unknown(("apply",))
    return placement.reconcile(call, a.boolean("apply", False))


def _op_id(a, field):
    op_id = a.string(field, max_len=64)
    if not journal.valid_op_id(op_id):
        raise invalid(field, "is not an operation id (letters, digits, . _ -)", INVALID_ARGUMENT)
    return op_id


FUNCTIONS = (
    "version",
    "check_config",
    "list_drivers",
    "connect_volume",
    "disconnect_volume",
    "attach_volume",
    "detach_volume",
    "list_attachments",
    "recover",
    "cancel",
    "gc",
    "extend_volume",
    "connector",
    "prepare_host",
    "release_host",
    "reconcile",
    "probe",
    "smoke_volume",
)
# The functions that change the pool: journaled, with the dead operations of the host
# recovered first and results kept by operation id.
JOURNALED = (
    "connect_volume",
    "disconnect_volume",
    "attach_volume",
    "detach_volume",
    "prepare_host",
    "release_host",
    "reconcile",
)
