"""`xensm`: the generic pass-through of the 2012 blueprint, for any SM type.

data names the SR (sr_uuid, sr_type) and lists in introduce_sr_keys which of its other keys
become the PBD's device_config; the VDI is vdi_uuid (or, for LUN-per-VDI types, target_lun)."""

import re

from ..policy import LOCAL_SR_TYPES
from ..redact import is_secret_key, is_secret_ref
from .base import Config, Driver, scan, vdi_by_sm_config, vdi_by_uuid_with_scan, wait_for

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple  # noqa: F401

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
# "user:pw@host", "scheme://user:pw@", or "password=..." inside an option string
_EMBEDDED_SECRET = re.compile(
    r"^([A-Za-z][A-Za-z0-9+.-]*:)?(//)?[^/@:\s]*:[^/@\s]+@"
    r"|(^|[\s,])[A-Za-z0-9_-]*(password|passwd|secret|keyring|token|key)"
    r"=[^,\s]",
    re.I,
)
_SR_TYPE = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")
_NOT_DCONF = (
    "sr_type",
    "sr_uuid",
    "vdi_uuid",
    "name_label",
    "name_description",
    "introduce_sr_keys",
    "target_lun",
    "access_mode",
)


class XenSMDriver(Driver):
    volume_types = ("xensm",)  # type: Tuple[str, ...]

    def validate(self, d):
        sr_type = d.string("sr_type", max_len=32)
        if not _SR_TYPE.match(sr_type):
            raise d.bad("sr_type", "is not an SR type name")
        keys = d.string_list("introduce_sr_keys") or []
        dconf = {}
        for i, key in enumerate(keys):
            if not isinstance(key, str) or not _KEY.match(key):
                raise d.bad("introduce_sr_keys[%d]" % i, "is not a device_config key name")
            if key in _NOT_DCONF:
                continue
            if is_secret_key(key) or is_secret_ref(key):
                if not key.endswith(("password", "password_secret")):
                    # xapi turns only *password keys into secrets (xapi_secret.ml
                    # move_passwds_to_secrets); any other would sit in device_config in clear.
                    raise d.bad(
                        "introduce_sr_keys[%d]" % i,
                        "%s holds a secret, and only *password keys are kept as XAPI secrets" % key,
                    )
                if d.has(key + "_secret") and not is_secret_ref(key):
                    dconf[key + "_secret"] = d.uuid(key + "_secret")  # a XAPI secret's uuid
                elif is_secret_ref(key):
                    dconf[key] = d.uuid(key)
                else:
                    dconf[key] = d.password(key)
                continue
            value = d.raw(key)
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int):
                value = str(value)
            if not isinstance(value, str):
                raise d.bad(
                    key,
                    "is listed in introduce_sr_keys but is %s"
                    % ("missing" if value is None else "not a string"),
                )
            dconf[key] = d.string(key, max_len=1024)
            if _EMBEDDED_SECRET.search(dconf[key]):
                raise d.bad(
                    key,
                    "carries a password inside the value, which would sit in "
                    "device_config in clear; give it as a *password key",
                )
        cfg = Config(
            sr_uuid=d.uuid("sr_uuid"),
            sr_type=sr_type,
            dconf=dconf,
            vdi_uuid=d.uuid("vdi_uuid", required=False),
            target_lun=d.integer("target_lun", required=False, low=0, high=16383),
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
            name_label=d.string("name_label", required=False, max_len=128),
            name_description=d.string("name_description", required=False, max_len=256),
        )
        if cfg.vdi_uuid is None and cfg.target_lun is None:
            raise d.bad("vdi_uuid", "is required (or target_lun for a LUN-per-VDI SR)")
        return cfg

    def sr_uuid(self, cfg):
        return cfg.sr_uuid

    def connect_volume(self, call, cfg, steps):
        # One driver object serves every SR type; the type of this call's SR comes from data.
        typed = _Typed(cfg.sr_type)
        return Driver.connect_volume(typed, call, cfg, steps)

    def device_config(self, cfg):
        return dict(cfg.dconf)

    def find_vdi(self, call, sr, cfg):
        if cfg.vdi_uuid:
            return vdi_by_uuid_with_scan(call, sr, cfg.vdi_uuid, "data.vdi_uuid")

        def scan_and_look(attempt):
            scan(call, sr, "scanning the SR", attempt)
            return vdi_by_sm_config(call, sr, "LUNid", str(cfg.target_lun))

        return wait_for(call, scan_and_look, "LUN %d" % cfg.target_lun, "data.target_lun")

    def locate_vdi(self, call, sr, cfg):
        if cfg.vdi_uuid:
            return call.find("VDI", cfg.vdi_uuid)
        return vdi_by_sm_config(call, sr, "LUNid", str(cfg.target_lun))


class _Typed(XenSMDriver):
    """XenSMDriver bound to one SR type for the duration of a connect."""

    volume_types = ()  # type: Tuple[str, ...]

    def __init__(self, sr_type):
        self.sr_type = sr_type
        self.shared = sr_type not in LOCAL_SR_TYPES
