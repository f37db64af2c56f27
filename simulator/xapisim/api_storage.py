"""SR, PBD and VDI messages: the database side of storage; the SM layer does the I/O."""

import uuid as uuidlib

from .api_pool import forward_to
from .errors import XapiError, internal
from .handlers import Context, check_map_keys, message, require_fields


# ------------------------------------------------------------------- secrets in device_config
def _secret_by_uuid(ctx, uuid):
    for ref, rec in ctx.db.tables["secret"].items():
        if rec["uuid"] == uuid:
            return ref, rec
    raise XapiError("UUID_INVALID", "secret", uuid)


def _move_passwords_to_secrets(ctx, dconf):
    """xen-api ocaml/xapi/xapi_secret.ml move_passwds_to_secrets: each `*password` key becomes
    `*password_secret` naming a new secret (message_forwarding.ml PBD.create does this first,
    before any check, so the secret stays even when the create then fails)."""
    out = {}
    for key, value in dconf.items():
        if key.endswith("password"):
            ref = ctx.db.create("secret", {"value": value})
            out[key + "_secret"] = ctx.db.raw("secret", ref)["uuid"]
        else:
            out[key] = value
    return out


def _duplicate_passwords(ctx, dconf):
    """xapi_secret.ml duplicate_passwds: every `*password_secret` is copied so that each PBD
    owns its own secret. After move_passwds_to_secrets, the moved secret is orphaned."""
    out = {}
    for key, value in dconf.items():
        if key.endswith("password_secret"):
            _ref, rec = _secret_by_uuid(ctx, value)
            copy = ctx.db.create("secret", {"value": rec["value"]})
            out[key] = ctx.db.raw("secret", copy)["uuid"]
        else:
            out[key] = value
    return out


def _drop_secrets(ctx, dconf):
    for key, value in dconf.items():
        if key.endswith("password_secret"):
            for ref, rec in list(ctx.db.tables["secret"].items()):
                if rec["uuid"] == value:
                    ctx.db.destroy("secret", ref)


# ------------------------------------------------------------------- SR
@message("SR.introduce")
def sr_introduce(
    ctx, uuid, name_label, name_description, type_, content_type, shared, sm_config=None
):
    if uuid and ctx.db.find("SR", uuid=uuid):
        raise XapiError("SR_UUID_EXISTS", uuid)
    return ctx.db.create(
        "SR",
        {
            "uuid": uuid or str(uuidlib.uuid4()),
            "name_label": name_label,
            "name_description": name_description,
            "type": type_.lower(),
            "content_type": content_type,
            "shared": shared,
            "sm_config": dict(sm_config or {}),
            "physical_size": "-1",
            "physical_utilisation": "-1",
            "virtual_allocation": "0",
        },
    )


@message("SR.forget")
def sr_forget(ctx, sr):
    ctx.db.raw("SR", sr)
    pbds = ctx.db.find("PBD", SR=sr)
    if any(ctx.db.raw("PBD", p)["currently_attached"] for p in pbds):
        raise XapiError("SR_HAS_PBD", sr)
    for p in pbds:
        _drop_secrets(ctx, ctx.db.raw("PBD", p)["device_config"])
        ctx.db.destroy("PBD", p)
    for v in ctx.db.find("VDI", SR=sr):
        ctx.db.destroy("VDI", v)
    ctx.db.destroy("SR", sr)


def _sr_master(ctx, sr):
    """Where SM runs for an SR and with which PBD: xapi forwards SR operations to the SR master
    (Helpers.i_am_srmaster: the pool master for a shared SR, else the host of its PBD), whose
    PBD must be plugged (xen-api ocaml/xapi/sm.ml assert_pbd_is_plugged: SR_HAS_NO_PBDS)."""
    rec = ctx.db.raw("SR", sr)
    pbds = [ctx.db.raw("PBD", p) for p in ctx.db.find("PBD", SR=sr)]
    if rec["shared"]:
        pbds = [p for p in pbds if p["host"] == ctx.sim.master.ref]
    plugged = [p for p in pbds if p["currently_attached"]]
    if not plugged:
        raise XapiError("SR_HAS_NO_PBDS", sr)
    host = ctx.sim.host(plugged[0]["host"])
    forward_to(ctx, host)  # forward_sr_op: do_op_on
    return host, plugged[0]


def _is_sr_master(ctx, sr_rec, host_ref):
    return not sr_rec["shared"] or host_ref == ctx.sim.master.ref


def _set_vdi_name(ctx, vdi, field, value):
    """xen-api ocaml/xapi/xapi_vdi.ml set_name_label/set_name_description: the storage layer
    sets the field (storage_smapiv1.ml), then `update` asserts the PBD of the SR is plugged
    where the call is forwarded (sm.ml assert_pbd_is_plugged: SR_HAS_NO_PBDS)."""
    with ctx.db.lock:
        rec = ctx.db.raw("VDI", vdi)
        _sr_master(ctx, rec["SR"])
        rec[field] = value


@message("VDI.set_name_label")
def vdi_set_name_label(ctx, vdi, value):
    _set_vdi_name(ctx, vdi, "name_label", value)


@message("VDI.set_name_description")
def vdi_set_name_description(ctx, vdi, value):
    _set_vdi_name(ctx, vdi, "name_description", value)


@message("SR.scan")
def sr_scan(ctx, sr):
    with ctx.db.lock:
        host, pbd = _sr_master(ctx, sr)
        rec = ctx.db.raw("SR", sr)
        dconf = dict(pbd["device_config"])
        sm = ctx.sim.sm.driver(rec["type"])
    with ctx.sim.sm.sr_lock(host, rec["uuid"]):
        found = sm.scan(host, rec, dconf)
        with ctx.db.lock:
            _synchronise(ctx, sr, found)
            # xen-api ocaml/xapi/xapi_sr.ml scan: a completed scan removes the `dirty` key.
            ctx.db.raw("SR", sr)["other_config"].pop("dirty", None)


def _synchronise(ctx, sr, found):
    """sm libs/sm/SR.py ScanRecord.synchronise: new locations are introduced (with the SM's
    managed flag), gone ones forgotten, existing ones updated (_db_update leaves managed)."""
    rec = ctx.db.raw("SR", sr)
    known = dict((ctx.db.raw("VDI", v)["location"], v) for v in ctx.db.find("VDI", SR=sr))
    for vdi in found:
        ref = known.pop(vdi["location"], None)
        if ref is None:
            fields = dict(vdi)
            fields.setdefault("uuid", str(uuidlib.uuid4()))
            fields["SR"] = sr
            ctx.db.create("VDI", fields)
        else:
            current = ctx.db.raw("VDI", ref)
            for key in ("virtual_size", "physical_utilisation", "sm_config", "read_only"):
                if key in vdi:
                    current[key] = vdi[key]
    for ref in known.values():
        ctx.db.destroy("VDI", ref)
    sizes = [int(v.get("virtual_size", "0")) for v in found]
    rec["virtual_allocation"] = str(sum(sizes))
    if rec["physical_size"] == "-1":
        rec["physical_size"] = str(sum(sizes))


def background_scan(sim):
    """xen-api ocaml/xapi/xapi_sr.ml scanning_thread/scan_all: every 30 s (host other_config
    auto-scan-interval), SR.scan of each plugged SR whose other_config has `dirty` or
    auto-scan=true; errors are logged and dropped."""
    with sim.db.lock:
        srs = [
            ref
            for ref, rec in sim.db.tables["SR"].items()
            if ("dirty" in rec["other_config"] or rec["other_config"].get("auto-scan") == "true")
            and any(sim.db.raw("PBD", p)["currently_attached"] for p in sim.db.find("PBD", SR=ref))
        ]
    for sr in srs:
        try:
            sr_scan(Context(sim, None, None, "xapi"), sr)
        except XapiError:
            pass


@message("SR.probe")
def sr_probe(ctx, host_ref, device_config, type_, sm_config=None):
    host = ctx.sim.host(host_ref)
    return ctx.sim.sm.probe(host, type_, device_config)


# ------------------------------------------------------------------- PBD
@message("PBD.create")
def pbd_create(ctx, rec):
    rec = require_fields("PBD", rec)
    # message_forwarding.ml PBD.create: move_passwds_to_secrets before anything else.
    dconf = _move_passwords_to_secrets(ctx, rec["device_config"])
    host, sr = rec["host"], rec["SR"]
    ctx.db.raw("host", host)
    ctx.db.raw("SR", sr)
    # xapi_pbd.ml create_common: PBD_EXISTS, then the SRmaster key, then duplicate_passwds.
    for existing in ctx.db.find("PBD", SR=sr, host=host):
        raise XapiError("PBD_EXISTS", sr, host, existing)
    if "SRmaster" in dconf:
        raise XapiError(
            "VALUE_NOT_SUPPORTED",
            "SRmaster",
            dconf["SRmaster"],
            "This key is for internal use only",
        )
    dconf = _duplicate_passwords(ctx, dconf)
    # xapi ignores the other_config given to PBD.create.
    return ctx.db.create(
        "PBD",
        {
            "host": host,
            "SR": sr,
            "device_config": dconf,
            "other_config": {},
            "currently_attached": False,
        },
    )


@message("PBD.set_device_config")
def pbd_set_device_config(ctx, pbd, value):
    # message_forwarding.ml PBD.set_device_config: passwords moved to secrets first, then
    # Sm.assert_session_has_internal_sr_access: only SM's own sessions may set it.
    ctx.db.raw("PBD", pbd)
    _move_passwords_to_secrets(ctx, value)
    raise XapiError("PERMISSION_DENIED", "")


@message("PBD.plug")
def pbd_plug(ctx, pbd):
    with ctx.db.lock:
        rec = ctx.db.raw("PBD", pbd)
        if rec["currently_attached"]:
            return
        sr_ref = rec["SR"]
        sr = ctx.db.raw("SR", sr_ref)
        sm = ctx.sim.sm.driver(sr["type"])
        host = ctx.sim.host(rec["host"])
        forward_to(ctx, host)  # message_forwarding.ml forward_pbd_op: do_op_on
    with ctx.sim.sm.sr_lock(host, sr["uuid"]):
        with ctx.db.lock:
            # xen-api ocaml/xapi/xapi_pbd.ml plug: check_sharing_constraint, then SR.attach.
            if not sr["shared"]:
                for other in ctx.db.find("PBD", SR=sr_ref):
                    o = ctx.db.raw("PBD", other)
                    if other != pbd and o["currently_attached"]:
                        raise XapiError("SR_NOT_SHARABLE", sr_ref, o["host"])
            dconf = dict(rec["device_config"])
            master = _is_sr_master(ctx, sr, host.ref)
            if master:
                # sm libs/sm/SRCommand.py sr_attach on the SR master: util.set_dirty (an
                # add_to_other_config that fails quietly when the key is there).
                sr["other_config"].setdefault("dirty", "")
        sm.attach(host, sr, dconf)
        with ctx.db.lock:
            rec = ctx.db.raw("PBD", pbd)
            rec["currently_attached"] = True
            sm.after_attach(host, sr, rec)
        if master:
            # sm SRCommand sr_attach -> SR.after_master_attach: a scan, whose failure is only
            # reported as a POST_ATTACH_SCAN_FAILED message (not modelled: no message class).
            try:
                found = sm.scan(host, sr, dconf)
                with ctx.db.lock:
                    _synchronise(ctx, sr_ref, found)
            except XapiError:
                pass


@message("PBD.unplug")
def pbd_unplug(ctx, pbd):
    rec = ctx.db.raw("PBD", pbd)
    forward_to(ctx, ctx.sim.host(rec["host"]))  # forward_pbd_op: do_op_on
    if not rec["currently_attached"]:
        return
    in_use = []
    for vdi in ctx.db.find("VDI", SR=rec["SR"]):
        for vbd in ctx.db.find("VBD", VDI=vdi):
            v = ctx.db.raw("VBD", vbd)
            vm = ctx.db.tables["VM"].get(v["VM"])
            if v["currently_attached"] and vm and vm["resident_on"] == rec["host"]:
                in_use.append(vdi)
    if in_use:
        raise XapiError("VDI_IN_USE", *in_use)
    sr = ctx.db.raw("SR", rec["SR"])
    sm = ctx.sim.sm.driver(sr["type"])
    host = ctx.sim.host(rec["host"])
    sm.detach(host, sr, rec["device_config"])
    sm.after_detach(host, sr, rec)
    rec["currently_attached"] = False


@message("PBD.destroy")
def pbd_destroy(ctx, pbd):
    rec = ctx.db.raw("PBD", pbd)
    if rec["currently_attached"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
    _drop_secrets(ctx, rec["device_config"])
    ctx.db.destroy("PBD", pbd)


# ------------------------------------------------------------------- VDI
@message("VDI.introduce")
def vdi_introduce(
    ctx,
    uuid,
    name_label,
    name_description,
    sr,
    type_,
    sharable,
    read_only,
    other_config,
    location,
    xenstore_data=None,
    sm_config=None,
    managed=True,
    virtual_size="0",
    physical_utilisation="0",
    metadata_of_pool=None,
    is_a_snapshot=False,
    snapshot_time=None,
    snapshot_of=None,
):
    """xen-api ocaml/xapi/xapi_vdi.ml introduce, forwarded to the SR master
    (message_forwarding.ml VDI.introduce: SR.forward_sr_op with op vdi_introduce)."""
    with ctx.db.lock:
        sr_rec = ctx.db.raw("SR", sr)
        sm = ctx.sim.sm.driver(sr_rec["type"])
        # xapi_sr_operations: vdi_introduce is allowed only with the VDI_INTRODUCE capability.
        if "VDI_INTRODUCE" not in sm.capabilities:
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
        host, pbd = _sr_master(ctx, sr)
        dconf = dict(pbd["device_config"])
        _assert_location_unique(ctx, sr, location, uuid)
    with ctx.sim.sm.sr_lock(host, sr_rec["uuid"]):
        try:
            vdi = sm.introduce(host, sr_rec, dconf, uuid, location, dict(sm_config or {}))
        except XapiError:
            # storage_smapiv1.ml VDI.introduce turns any SM failure into Storage_error
            # (Vdi_does_not_exist location); storage_utils.ml transform_storage_exn has no case
            # for it: INTERNAL_ERROR [Printexc.to_string e], the printer storage_interface.ml
            # registers (ocaml-rpc Rpc.to_string of the marshalled error).
            raise internal("Storage_error ([S(Vdi_does_not_exist);S(%s)])" % location) from None
        with ctx.db.lock:
            ctx.db.raw("SR", sr)
            # The SM (LUNperVDI.RAWVDI.introduce) updates the record of that LUN if there is
            # one and sets managed, else db_introduces it; xapi then update_vdi_db by location.
            found = ctx.db.find("VDI", SR=sr, location=vdi["location"])
            if found:
                ref = found[0]
                current = ctx.db.raw("VDI", ref)
                for key in ("virtual_size", "physical_utilisation", "sm_config"):
                    if key in vdi:
                        current[key] = vdi[key]
                current["managed"] = True
            else:
                fields = dict(vdi)
                fields.update({"SR": sr, "managed": True})
                ref = ctx.db.create("VDI", fields)
            # "Set the fields which belong to the higher-level API": overwritten, not merged.
            current = ctx.db.raw("VDI", ref)
            current.update(
                {
                    "other_config": dict(other_config),
                    "xenstore_data": dict(xenstore_data or {}),
                    "sharable": sharable,
                    "type": type_,
                }
            )
            # CA-13140: names only when given.
            if name_label:
                current["name_label"] = name_label
            if name_description:
                current["name_description"] = name_description
            return ref


def _assert_sm_session(ctx, sr, message, local_root_only):
    """What guards the setters SM uses on its own records: RBAC first (datamodel.ml
    allowed_roles _R_LOCAL_ROOT_ONLY for some: a local superuser session such as root's), then
    message_forwarding.ml Sm.assert_session_has_internal_sr_access (sm.ml): only a session
    whose other_config `_sm_session` is that SR's ref (the one xapi_session.ml SM.create_session
    makes for an SM process) passes, every other gets PERMISSION_DENIED [""]. The simulated
    SMs write the database directly and hold no session, so every API caller is refused."""
    session = ctx.db.raw("session", ctx.session) if ctx.session else None
    if local_root_only and (not session or not session.get("is_local_superuser")):
        raise XapiError("RBAC_PERMISSION_DENIED", message, "No permission in user session")
    if not session or session["other_config"].get("_sm_session") != sr:
        raise XapiError("PERMISSION_DENIED", "")


def _sm_setter(cls, field, local_root_only):
    name = "%s.set_%s" % (cls, field)

    def setter(ctx, ref, value):
        rec = ctx.db.raw(cls, ref)
        _assert_sm_session(ctx, rec["SR"] if cls == "VDI" else ref, name, local_root_only)
        # ints are kept in their XML-RPC form, a decimal string
        rec[field] = value if isinstance(value, (bool, str)) else str(value)

    message(name)(setter)


# message_forwarding.ml VDI.set_* and SR.set_* that call assert_session_has_internal_sr_access
# (roles from datamodel.ml: set_sharable/set_read_only _R_VM_ADMIN, set_physical_size
# _R_POOL_OP, the others _R_LOCAL_ROOT_ONLY). sm LUNperVDI.RAWVDI.create/delete claim and
# release a raw LUN with VDI.set_managed through the SM's session: clients cannot.
for _cls, _field, _root in (
    ("VDI", "managed", True),
    ("VDI", "sharable", False),
    ("VDI", "read_only", False),
    ("VDI", "missing", True),
    ("VDI", "virtual_size", True),
    ("VDI", "physical_utilisation", True),
    ("SR", "virtual_allocation", True),
    ("SR", "physical_size", False),
    ("SR", "physical_utilisation", True),
):
    _sm_setter(_cls, _field, _root)


# datamodel.ml vdi_type: cbt_metadata is refused by xapi_vdi.ml create.
_VDI_TYPES = (
    "system",
    "user",
    "ephemeral",
    "suspend",
    "crashdump",
    "ha_statefile",
    "metadata",
    "redo_log",
    "rrd",
    "pvs_cache",
    "cbt_metadata",
)


@message("VDI.create")
def vdi_create(ctx, rec):
    """message_forwarding.ml VDI.create: with_sr_andor_vdi (sr, `vdi_create) (xapi_sr_operations:
    the SM's VDI_CREATE capability, else SR_OPERATION_NOT_SUPPORTED), forwarded to the SR master;
    xapi_vdi.ml create: cbt_metadata refused, Sm.assert_pbd_is_plugged, the SM's vdi_create
    (storage_smapiv1.ml: an SM failure comes back as its SR_BACKEND_FAILURE_<n>), update_vdi_db
    by location (an existing record is kept and updated), then other_config, sharable, tags and
    xenstore_data set on that record."""
    rec = require_fields("VDI", rec)
    try:
        size = int(rec["virtual_size"])
    except (TypeError, ValueError):
        raise internal('Rpc.Runtime_error("int64", %r)' % (rec["virtual_size"],)) from None
    vdi_type = str(rec["type"]).lower()
    if vdi_type not in _VDI_TYPES:
        raise internal(
            "Unhandled pattern when unmarshalling variant type: found 'S(%s)'" % vdi_type
        )
    with ctx.db.lock:
        sr = rec["SR"]
        sr_rec = ctx.db.raw("SR", sr)
        sm = ctx.sim.sm.driver(sr_rec["type"])
        if "VDI_CREATE" not in sm.capabilities:
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
        if vdi_type == "cbt_metadata":
            raise XapiError("VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata")
        host, pbd = _sr_master(ctx, sr)
        dconf = dict(pbd["device_config"])
    for value in (rec["other_config"], rec.get("xenstore_data") or {}):
        check_map_keys(value)
    with ctx.sim.sm.sr_lock(host, sr_rec["uuid"]):
        ref = sm.vdi_create(host, sr, dconf, size)
        with ctx.db.lock:
            ctx.db.raw("VDI", ref).update(
                {
                    "other_config": dict(rec["other_config"]),
                    "sharable": rec["sharable"],
                    "tags": list(rec.get("tags") or []),
                    "xenstore_data": dict(rec.get("xenstore_data") or {}),
                }
            )
            return ref


@message("VDI.destroy")
def vdi_destroy(ctx, vdi):
    """message_forwarding.ml VDI.destroy: with_sr_andor_vdi (the SM's VDI_DELETE capability,
    then xapi_vdi.ml check_operation_error: an attached or reserved VBD is VDI_IN_USE
    [vdi, "destroy"]), forwarded to the SR master; xapi_vdi.ml destroy_and_data_destroy_common:
    assert_pbd_is_plugged, assert_managed (VDI_NOT_MANAGED), the SM's vdi_delete, then the record
    and every VBD of the VDI destroyed."""
    with ctx.db.lock:
        rec = ctx.db.raw("VDI", vdi)
        sr = rec["SR"]
        sr_rec = ctx.db.raw("SR", sr)
        sm = ctx.sim.sm.driver(sr_rec["type"])
        if "VDI_DELETE" not in sm.capabilities:
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
        _assert_no_active_vbd(ctx, vdi)
        host, pbd = _sr_master(ctx, sr)
        if not rec["managed"]:
            raise XapiError("VDI_NOT_MANAGED", vdi)
        dconf = dict(pbd["device_config"])
    with ctx.sim.sm.sr_lock(host, sr_rec["uuid"]):
        sm.vdi_delete(host, sr, dconf, vdi)
        with ctx.db.lock:
            # xapi rechecks nothing here: a VBD made meanwhile goes with the VDI.
            if ctx.db.exists("VDI", vdi):
                ctx.db.destroy("VDI", vdi)
            for vbd in ctx.db.find("VBD", VDI=vdi):
                ctx.db.destroy("VBD", vbd)


def _assert_no_active_vbd(ctx, vdi):
    for vbd in ctx.db.find("VBD", VDI=vdi):
        v = ctx.db.raw("VBD", vbd)
        if v["currently_attached"] or v.get("reserved"):
            raise XapiError("VDI_IN_USE", vdi, "destroy")


def _assert_location_unique(ctx, sr, location, uuid):
    # xapi_vdi.ml introduce: another VDI of the SR at that location under another uuid.
    for v in ctx.db.find("VDI", SR=sr, location=location):
        if ctx.db.raw("VDI", v)["uuid"] != uuid:
            raise XapiError("LOCATION_NOT_UNIQUE", sr, location)


@message("VDI.forget")
def vdi_forget(ctx, vdi):
    ctx.db.raw("VDI", vdi)
    for vbd in ctx.db.find("VBD", VDI=vdi):
        if ctx.db.raw("VBD", vbd)["currently_attached"]:
            raise XapiError("VDI_IN_USE", vdi, "forget")
    ctx.db.destroy("VDI", vdi)
