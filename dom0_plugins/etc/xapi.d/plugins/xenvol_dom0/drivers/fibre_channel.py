"""`fibre_channel`: a Cinder FC volume as a raw LUN of XenServer's `hba` SR (LUN per VDI).

One non-shared `hba` SR per host: xapi scans an SR on its SR master only, and each host sees
its own zoning. SR.scan rescans the HBAs (sm HBASR); the LUN is then found the way the host's
kernel shows it: /sys/block/sdX/device -> H:C:T:L, initiator = fc_host/hostH/port_name, target
= fc_transport/targetH:C:T/port_name, SCSI id from the disk's wwid. The VDI is the one with
that sm_config SCSIid. HBASR leaves scanned LUNs unmanaged and cannot VDI.introduce them
(_getLUNbySMconfig always fails), and VDI.set_managed is the SM's alone: the LUN is claimed by
VDI.create on the SR, checked by SCSI id (luns.claim_lun, run by Driver.connect_volume)."""

import glob
import os
import re

from ..errors import VDI_NOT_FOUND, XenvolError
from .base import Config, Driver, name_uuid, scan, vdi_by_sm_config, wait_for

LUN_MAX = 16383
# The host's FC ports as the kernel lists them (os-brick linuxfc reads the same files; sm
# devscan.adapters does for SR.probe type=hba).
FC_HOST_DIR = "/sys/class/fc_host"
_WWN = re.compile(r"^(0x)?([0-9a-f]{2}:?){7}[0-9a-f]{2}$")
_HCTL = re.compile(r"^([0-9]+):([0-9]+):([0-9]+):([0-9]+)$")
_DIGITS = re.compile(r"^[0-9]{1,5}\Z")

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict  # noqa: F401


class FibreChannelDriver(Driver):
    volume_types = ("fibre_channel",)
    sr_type = "hba"
    shared = False

    def connector_properties(self):
        ports = [p for p in host_ports() if p["port_name"]]
        if not ports:
            return {}
        return {
            "wwpns": [p["port_name"] for p in ports],
            "wwnns": [p["node_name"] for p in ports],
        }

    def validate(self, d):
        pairs = _targets(d)
        itmap = d.raw("initiator_target_map")
        if itmap is not None:
            if not isinstance(itmap, dict) or not itmap or len(itmap) > 64:
                raise d.bad(
                    "initiator_target_map",
                    "must be an object of initiator WWPN -> list of target WWNs",
                )
            itmap = dict(
                (
                    _wwn(d, "initiator_target_map", i) if isinstance(i, str) else None,
                    _wwn_list(d, "initiator_target_map[%s]" % i[:24], t),
                )
                for i, t in sorted(itmap.items())
            )
        return Config(
            pairs=sorted(set(pairs)),
            itmap=itmap,
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
            volume_id=d.string("volume_id", required=False, max_len=128),
            name_label=d.string("name_label", required=False, max_len=128),
        )

    def sr_uuid(self, cfg):
        return name_uuid("hba/%s" % cfg.host_uuid)

    def sr_label(self, cfg):
        return cfg.get("name_label") or "xenvol FC LUNs"

    def device_config(self, cfg):
        return {}

    def find_vdi(self, call, sr, cfg):
        def scan_and_look(attempt):
            scan(call, sr, "scanning the HBA SR", attempt)
            scsi_id = self._scsi_id(cfg)
            return scsi_id and vdi_by_sm_config(call, sr, "SCSIid", scsi_id)

        return wait_for(call, scan_and_look, "FC LUN %s" % _describe(cfg), "data.target_lun")

    def locate_vdi(self, call, sr, cfg):
        scsi_id = self._scsi_id(cfg)
        return scsi_id and vdi_by_sm_config(call, sr, "SCSIid", scsi_id)

    def _scsi_id(self, cfg):
        """The SCSI id of the devices at (target WWN, LUN) seen through allowed initiators."""
        found = set()
        for initiator, target, lun, dev in _fc_devices():
            if (target, lun) not in cfg.pairs:
                continue
            if cfg.itmap is not None and target not in cfg.itmap.get(initiator, []):
                continue
            scsi_id = _scsi_id_of(dev)
            if scsi_id:
                found.add(scsi_id)
        if len(found) > 1:
            raise XenvolError(
                VDI_NOT_FOUND,
                "data.target_wwns: the targets and LUNs given are "
                "different disks (SCSI ids %s)" % ", ".join(sorted(found)),
                field="data.target_wwns",
            )
        return found.pop() if found else None


def _fc_devices():
    """(initiator wwpn, target wwn, lun, sdX) for every FC disk the host shows."""
    root = "/sys/block"
    out = []
    for dev in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        # A disk can go between the listing and the reading (a LUN removed, a rescan): on
        # sysfs its entries vanish, and so does the disk from what the host shows.
        try:
            link = os.readlink(os.path.join(root, dev, "device"))  # ../../../H:C:T:L
        except OSError:
            continue
        m = _HCTL.match(os.path.basename(link))
        if not m:
            continue
        h, c, t, lun = m.groups()
        initiator = _read(os.path.join(FC_HOST_DIR, "host%s" % h, "port_name"))
        target = _read("/sys/class/fc_transport/target%s:%s:%s/port_name" % (h, c, t))
        if initiator and target:
            out.append((initiator, target, int(lun), dev))
    return out


def host_ports():
    """[{name, port_name, node_name, port_state}] of each FC port (names in lower case, no
    0x; "" where the kernel shows nothing)."""
    out = []
    for d in sorted(glob.glob(os.path.join(FC_HOST_DIR, "host*"))):
        port, node, state = [
            _read_text(os.path.join(d, name)) or ""
            for name in ("port_name", "node_name", "port_state")
        ]
        out.append(
            {
                "name": os.path.basename(d),
                "port_name": port.lower().replace("0x", ""),
                "node_name": node.lower().replace("0x", ""),
                "port_state": state,
            }
        )
    return out


def _scsi_id_of(dev):
    """SM's SCSIid of a disk (scsi_id -g: "3" + the NAA designator), from the kernel's wwid."""
    wwid = _read_text("/sys/block/%s/device/wwid" % dev)
    if wwid and wwid.startswith("naa."):
        return "3" + wwid[4:]
    return None


def _read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _read(path):
    """A WWN from sysfs, normalised, or None."""
    try:
        return _norm(_read_text(path) or "")
    except ValueError:
        return None


def _norm(text):
    value = text.lower().replace(":", "")
    value = value[2:] if value.startswith("0x") else value
    if not re.match(r"^[0-9a-f]{16}$", value):
        raise ValueError(text)
    return value


def _wwn(d, field, value):
    if not isinstance(value, str) or len(value) > 32 or not _WWN.match(value.lower()):
        raise d.bad(field, "is not a WWN (16 hex digits, optionally with ':' or 0x)")
    return _norm(value)


def _wwn_list(d, key, value=None):
    value = d.raw(key) if value is None else value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or len(value) > 64:
        raise d.bad(key, "must be a WWN or a non-empty list of WWNs")
    return [_wwn(d, "%s[%d]" % (key, i), w) for i, w in enumerate(value)]


def _targets(d):
    """[(target WWN, LUN)] as os-brick fibre_channel.py _add_targets_to_connection_properties
    builds `targets`: the WWNs of target_wwns, else of target_wwn (one or a list); the LUNs of
    target_luns, else target_lun; one LUN per WWN, or one LUN for every WWN. Stricter than
    os-brick: target_lun is required when target_luns is absent (os-brick assumes 0), and a
    target_lun given beside target_luns must be one of them."""

    def given(key):
        return d.raw(key) not in (None, "", [])  # os-brick: a falsy value is absent

    key = "target_wwns" if given("target_wwns") else "target_wwn"
    if not given(key):
        raise d.bad("target_wwn", "is required (a WWN or a list of WWNs; or target_wwns)")
    wwns = _wwn_list(d, key)
    if key == "target_wwns" and given("target_wwn"):
        other = _wwn_list(d, "target_wwn")
        if set(other) != set(wwns):
            raise d.bad("target_wwn", "names other ports than target_wwns")
    lun = _lun(d, "target_lun", d.raw("target_lun")) if given("target_lun") else None
    luns = d.raw("target_luns")
    if given("target_luns"):
        if not isinstance(luns, list) or len(luns) > 64:
            raise d.bad("target_luns", "must be a list of LUNs, one per target WWN")
        luns = [_lun(d, "target_luns[%d]" % i, n) for i, n in enumerate(luns)]
        if lun is not None and lun not in luns:
            raise d.bad("target_lun", "is not one of target_luns (%s)" % _short(luns))
    elif lun is None:
        raise d.bad("target_lun", "is required (or target_luns, one per target WWN)")
    else:
        luns = [lun]
    if len(luns) == 1:
        pairs = [(w, luns[0]) for w in wwns]
    elif len(luns) == len(wwns):
        pairs = list(zip(wwns, luns))
    else:
        raise d.bad(
            "target_luns",
            "has %d LUNs for %d target WWNs (%s): give one LUN, or one per WWN"
            % (len(luns), len(wwns), key),
        )
    by_port = {}  # type: Dict[str, int]
    for w, n in pairs:
        if by_port.setdefault(w, n) != n:
            raise d.bad(
                "target_luns",
                "gives target port %s two LUNs (%d and %d): one volume has one LUN per port"
                % (w, by_port[w], n),
            )
    return pairs


def _lun(d, field, value):
    if value is None or value == "":
        raise d.bad(field, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise d.bad(field, "must be an integer LUN")
    if isinstance(value, str):
        # ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses.
        if not _DIGITS.match(value.strip()):
            raise d.bad(
                field,
                "must be an integer LUN from 0 to %d, not a string of other characters" % LUN_MAX,
            )
        value = int(value.strip())
    if not 0 <= value <= LUN_MAX:
        raise d.bad(field, "must be from 0 to %d (got %d)" % (LUN_MAX, value))
    return value


def _short(luns):
    return ", ".join(str(n) for n in luns[:8]) + (", …" if len(luns) > 8 else "")


def _describe(cfg):
    return ", ".join("%s/%d" % p for p in cfg.pairs[:4])
