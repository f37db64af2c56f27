"""What a call may touch: the operator's policy from /etc/xenvol/xenvol.conf (settings.py) and
the rules no policy lifts. Every refusal is XENVOL_POLICY_REFUSED naming the field; what a
call cannot honour but may ignore is listed in the result's `ignored`, never dropped silently.
docs/plugin-api.md describes each rule."""

import os

from . import storage
from .errors import POLICY_REFUSED, XenvolError
from .marks import MADE_BY

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Tuple  # noqa: F401

    from .call import Call  # noqa: F401
    from .check import Fields  # noqa: F401

# SM types whose storage is a disk or directory of one host: the host's own Local storage.
LOCAL_SR_TYPES = (
    "file",
    "ext",
    "ext4",
    "lvm",
    "udev",
    "zfs",
    "xfs",
    "largeblock",
    "dummy",
    "btrfs",
)
# Never volume directories, whatever file_roots says: dom0's root and configuration, xapi's
# state, other SRs' mounts, the kernel's file systems.
FORBIDDEN_DIRS = (
    "/etc",
    "/var/lib/xcp",
    "/var/xapi",
    "/opt/xensource",
    "/var/run/sr-mount",
    "/run/sr-mount",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/root",
    "/var/log",
    "/var/lock",
)


def refused(field, problem, **details):
    # type: (str, str, **Any) -> XenvolError
    return XenvolError(POLICY_REFUSED, "%s: %s" % (field, problem), field=field, **details)


def check_sr(call, cfg):
    # type: (Call, Any) -> None
    """An SR the caller names (data.sr_uuid) or has introduced (data.sr_type): xenvol uses an
    existing SR only if it introduced it or the operator allowed it, and introduces a local
    SR type only if the operator allowed that type."""
    allowed_types = setting_list(call, "allowed_sr_types")
    sr_type = cfg.get("sr_type")
    if sr_type in LOCAL_SR_TYPES and sr_type not in allowed_types:
        raise refused(
            "data.sr_type",
            "%s is a local SR type (a host's own disks); xenvol uses "
            "it only when the operator lists it in allowed_sr_types" % sr_type,
        )
    sr_uuid = cfg.get("sr_uuid")
    if not sr_uuid:
        return
    sr = call.find("SR", sr_uuid)
    if sr is None:
        return
    # Another xenvol call may have introduced it and not yet marked it.
    rec = storage.settled(call, sr, call.do("reading the SR", call.x.SR.get_record, sr))
    if rec is None or rec["other_config"].get(storage.INTRODUCED) == "true":
        return
    if sr_uuid in [u.lower() for u in setting_list(call, "allowed_sr_uuids")]:
        return
    if rec["type"] in allowed_types and rec["type"] not in LOCAL_SR_TYPES:
        return
    raise refused(
        "data.sr_uuid",
        "SR %s was not introduced by xenvol and the operator has not "
        "allowed it (allowed_sr_uuids, allowed_sr_types)" % sr_uuid,
        sr_uuid=sr_uuid,
    )


def setting_list(call, key):
    # type: (Call, str) -> List[str]
    """A list of strings from xenvol.conf; anything else counts as empty (never a substring
    test on a mistyped string)."""
    value = call.settings.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def check_vdi(call, vdi, vm, mode, multiattach):
    # type: (Call, str, Optional[str], Optional[str], bool) -> None
    """Never another VM's disk that xenvol did not attach; read-write next to another VM's
    read-write attachment only for a multi-attach volume."""
    x = call.x
    # One filtered read, whatever the VDI's VBDs (none when the attach read them just now,
    # under the VM's lock); kept for the attach that follows.
    found = call.vdi_vbds.get(vdi)
    if found is None:
        found = call.do(
            "listing the VDI's disks", x.VBD.get_all_records_where, 'field "VDI" = "%s"' % vdi
        )
        call.vbd_records.update(found)
        call.vdi_vbds[vdi] = found
    for _vbd, rec in sorted(found.items()):
        if vm is not None and rec["VM"] == vm:
            continue
        if rec["other_config"].get(MADE_BY) != "true":
            raise refused(
                "connection_info",
                "the volume's VDI is a disk of another VM that "
                "xenvol did not attach; xenvol attaches volumes only",
            )
        if mode == "rw" and rec["mode"] == "RW" and not multiattach:
            raise refused(
                "mode",
                "the volume is attached read-write to another VM and is not "
                "multi-attach (connection_info.multiattach); attach it ro, or detach "
                "it there first",
            )


def check_data(call, data, envelope):
    # type: (Call, Fields, Any) -> Tuple[bool, List[Dict[str, str]]]
    """Policy on connection_info's optional keys; returns (multiattach, ignored)."""
    ignored = []
    if data.boolean("encrypted", False):
        if call.settings.get("allow_encrypted") is not True:
            raise refused(
                "data.encrypted",
                "the volume is encrypted (LUKS): xenvol attaches it "
                "as it is, so the guest would see ciphertext; the operator may allow "
                "this with allow_encrypted when guests decrypt themselves",
            )
        ignored.append(
            {
                "field": "data.encrypted",
                "reason": "attached as ciphertext: the guest decrypts it (allow_encrypted)",
            }
        )
    qos = data.raw("qos_specs")
    if qos not in (None, {}, ""):
        if not isinstance(qos, dict):
            raise data.bad("qos_specs", "must be an object")
        # xen-api ocaml/xapi/xapi_xenops.ml: a VBD's only QoS is ionice (a scheduling class
        # and priority); Cinder's qos_specs are rate limits, which XAPI cannot express.
        for key in sorted(qos):
            ignored.append(
                {
                    "field": "data.qos_specs.%s" % key,
                    "reason": "XAPI's VBD QoS is "
                    "ionice priority only; Cinder rate limits cannot be applied",
                }
            )
    if data.boolean("discard", False):
        ignored.append(
            {
                "field": "data.discard",
                "reason": "XAPI has no per-VBD discard "
                "setting; the guest gets discard only if the SR's storage manager "
                "offers it",
            }
        )
    multiattach = data.boolean("multiattach", False)
    top = envelope.get("multiattach") if isinstance(envelope, dict) else None
    if top not in (None, ""):
        if not isinstance(top, bool) and str(top).lower() not in ("true", "false"):
            raise XenvolError(
                POLICY_REFUSED,
                "connection_info.multiattach: must be true or false",
                field="connection_info.multiattach",
            )
        multiattach = multiattach or top is True or str(top).lower() == "true"
    return multiattach, ignored


def file_directory(path, roots, field):
    # type: (str, Iterable[Any], str) -> str
    """The real directory behind `path` if it lies under one of the operator's roots and
    in none of the forbidden places; symlinks and '..' are resolved first."""
    real = os.path.realpath(path)
    if real == "/":
        raise refused(field, "is dom0's root directory")
    for bad in FORBIDDEN_DIRS:
        if _under(real, os.path.realpath(bad)):
            raise refused(field, "is in a system directory xenvol never serves volumes from")
    for root in roots:
        if not isinstance(root, str) or not root.startswith("/"):
            continue
        base = os.path.realpath(root)
        if base != "/" and _under(real, base):
            return real
    raise refused(field, "is not under a volume directory the operator allowed (file_roots)")


def _under(path, base):
    # type: (str, str) -> bool
    return path == base or path.startswith(base.rstrip("/") + "/")
