"""SR, PBD and VDI messages: the database side of storage; the SM layer does the I/O."""
import uuid as uuidlib

from .errors import XapiError, internal
from .messages import message, require_fields


# ------------------------------------------------------------------- secrets in device_config
def _secret_by_uuid(ctx, uuid):
    for ref, rec in ctx.db.tables["secret"].items():
        if rec["uuid"] == uuid:
            return ref, rec
    raise XapiError("UUID_INVALID", "secret", uuid)


def _protect_passwords(ctx, dconf):
    """xapi's handling of password keys: plain values become secrets, and referenced
    secrets are copied so that every PBD owns its own."""
    out = {}
    for key, value in dconf.items():
        if key.endswith("password_secret"):
            _ref, rec = _secret_by_uuid(ctx, value)
            copy = ctx.db.create("secret", {"value": rec["value"]})
            out[key] = ctx.db.raw("secret", copy)["uuid"]
        elif key.endswith("password"):
            ref = ctx.db.create("secret", {"value": value})
            out[key + "_secret"] = ctx.db.raw("secret", ref)["uuid"]
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
def sr_introduce(ctx, uuid, name_label, name_description, type_, content_type, shared,
                 sm_config=None):
    if uuid and ctx.db.find("SR", uuid=uuid):
        raise XapiError("SR_UUID_EXISTS", uuid)
    return ctx.db.create("SR", {
        "uuid": uuid or str(uuidlib.uuid4()), "name_label": name_label,
        "name_description": name_description, "type": type_.lower(),
        "content_type": content_type, "shared": shared, "sm_config": dict(sm_config or {}),
        "physical_size": "-1", "physical_utilisation": "-1", "virtual_allocation": "0"})


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


def _scan_host(ctx, sr):
    """The host an SR operation runs on: the master for a shared SR, else its PBD's host."""
    rec = ctx.db.raw("SR", sr)
    plugged = [ctx.db.raw("PBD", p) for p in ctx.db.find("PBD", SR=sr)
               if ctx.db.raw("PBD", p)["currently_attached"]]
    if rec["shared"]:
        plugged = [p for p in plugged if p["host"] == ctx.sim.master.ref]
    if not plugged:
        raise XapiError("SR_HAS_NO_PBDS", sr)
    return ctx.sim.host(plugged[0]["host"]), plugged[0]


@message("SR.scan")
def sr_scan(ctx, sr):
    host, pbd = _scan_host(ctx, sr)
    rec = ctx.db.raw("SR", sr)
    found = ctx.sim.sm.scan(host, rec, pbd["device_config"])
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


@message("SR.probe")
def sr_probe(ctx, host_ref, device_config, type_, sm_config=None):
    host = ctx.sim.host(host_ref)
    return ctx.sim.sm.probe(host, type_, device_config)


# ------------------------------------------------------------------- PBD
@message("PBD.create")
def pbd_create(ctx, rec):
    rec = require_fields("PBD", rec)
    host, sr = rec["host"], rec["SR"]
    ctx.db.raw("host", host)
    ctx.db.raw("SR", sr)
    for existing in ctx.db.find("PBD", SR=sr, host=host):
        raise XapiError("PBD_EXISTS", sr, host, existing)
    dconf = rec["device_config"]
    if "SRmaster" in dconf:
        raise XapiError("VALUE_NOT_SUPPORTED", "SRmaster", dconf["SRmaster"],
                        "This key is for internal use only")
    dconf = _protect_passwords(ctx, dconf)
    # xapi ignores the other_config given to PBD.create.
    return ctx.db.create("PBD", {"host": host, "SR": sr, "device_config": dconf,
                                 "other_config": {}, "currently_attached": False})


@message("PBD.set_device_config")
def pbd_set_device_config(ctx, pbd, value):
    rec = ctx.db.raw("PBD", pbd)
    rec["device_config"] = _protect_passwords(ctx, value)


@message("PBD.plug")
def pbd_plug(ctx, pbd):
    rec = ctx.db.raw("PBD", pbd)
    if rec["currently_attached"]:
        return
    sr = ctx.db.raw("SR", rec["SR"])
    sm = ctx.sim.sm.driver(sr["type"])
    if not sr["shared"]:
        for other in ctx.db.find("PBD", SR=rec["SR"]):
            o = ctx.db.raw("PBD", other)
            if other != pbd and o["currently_attached"]:
                raise XapiError("SR_NOT_SHARABLE", rec["SR"], o["host"])
    host = ctx.sim.host(rec["host"])
    sm.attach(host, sr, rec["device_config"])
    rec["currently_attached"] = True


@message("PBD.unplug")
def pbd_unplug(ctx, pbd):
    rec = ctx.db.raw("PBD", pbd)
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
    ctx.sim.sm.driver(sr["type"]).detach(ctx.sim.host(rec["host"]), sr, rec["device_config"])
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
def vdi_introduce(ctx, uuid, name_label, name_description, sr, type_, sharable, read_only,
                  other_config, location, xenstore_data=None, sm_config=None, managed=True,
                  virtual_size="0", physical_utilisation="0", metadata_of_pool=None,
                  is_a_snapshot=False, snapshot_time=None, snapshot_of=None):
    sr_rec = ctx.db.raw("SR", sr)
    sm = ctx.sim.sm.driver(sr_rec["type"])
    if "VDI_INTRODUCE" not in sm.capabilities:
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    host = ctx.sim.host(ctx.db.raw("session", ctx.session)["this_host"])
    pbds = [ctx.db.raw("PBD", p) for p in ctx.db.find("PBD", SR=sr, host=host.ref)]
    if not any(p["currently_attached"] for p in pbds):
        raise XapiError("SR_HAS_NO_PBDS", sr)
    for v in ctx.db.find("VDI", SR=sr, location=location):
        if ctx.db.raw("VDI", v)["uuid"] != uuid:
            raise XapiError("LOCATION_NOT_UNIQUE", sr, location)
        return v
    try:
        vdi = sm.introduce(host, sr_rec, pbds[0]["device_config"], uuid, location,
                           dict(sm_config or {}))
    except XapiError as e:
        # xapi re-raises any SM failure here as Vdi_does_not_exist, losing the SM code.
        raise internal("Storage_interface.Vdi_does_not_exist(\"%s\") [%s]" % (location, e.code))
    existing = ctx.db.find("VDI", SR=sr, location=vdi["location"])
    if existing:
        return existing[0]
    fields = dict(vdi)
    fields.update({"SR": sr, "other_config": dict(other_config),
                   "xenstore_data": dict(xenstore_data or {}), "sharable": sharable,
                   "type": type_})
    if name_label:
        fields["name_label"] = name_label
    if name_description:
        fields["name_description"] = name_description
    return ctx.db.create("VDI", fields)


@message("VDI.forget")
def vdi_forget(ctx, vdi):
    ctx.db.raw("VDI", vdi)
    for vbd in ctx.db.find("VBD", VDI=vdi):
        if ctx.db.raw("VBD", vbd)["currently_attached"]:
            raise XapiError("VDI_IN_USE", vdi, "forget")
    ctx.db.destroy("VDI", vdi)
