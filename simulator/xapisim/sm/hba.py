"""`hba`: raw LUN per VDI over a simulated Fibre Channel fabric (sm drivers/HBASR.py,
LUNperVDI.py, devscan.py).

The fabric: every host has HBA ports (WWPNs), arrays present LUNs (number, SCSI id, size,
masking by initiator WWPN) on target ports (WWNs), and zones pair initiators with targets.
A rescan writes what a host's kernel would show under its root: /sys/class/fc_host/hostN
(port_name, node_name, port_state), /sys/class/fc_transport/targetN:0:T/port_name, the
disks with their wwid (/sys/block/sdX/device), /dev/sdX,
/dev/disk/by-path/pci-…-fc-0x<wwn>-lun-<n> and /dev/disk/by-scsid/<SCSIid>/sdX
(XenServer's udev rules). Set up through the admin API (fc_ports, fc_lun, fc_zone …)."""

import os
import re
import shutil
import threading

from .base import StorageManager
from .errors import raw_error, sm_error
from .iscsi import vdi_uuid_for

WWN = re.compile(r"^[0-9a-f]{16}$")
DRIVER = "qla2xxx"  # the HBA kernel driver devscan sees (filtered by dconf `type`)


def wwn(text):
    """'21:00:00:24:FF:01:02:03', '0x2100…' or '2100…' -> 16 lower-case hex digits."""
    value = str(text).lower().replace(":", "")
    if value.startswith("0x"):
        value = value[2:]
    if not WWN.match(value):
        raise ValueError("not a WWN: %r" % text)
    return value


class Fabric:
    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.Lock()
        self.ports = {}  # host uuid -> [wwpn]
        self.targets = {}  # target wwn -> {lun: {"scsi_id", "size", "initiators"}}
        self.zones = set()  # (initiator wwpn, target wwn)
        self.written = {}  # host uuid -> the view written under its root (rescan)
        self.disks = {}  # host uuid -> {(scsi host, target index, lun, target, scsi id): sdX}

    def host_ports(self, host):
        with self.lock:
            # Two ports per host unless set: 10:00:00:00:c9:HH:00:0P.
            return list(
                self.ports.setdefault(
                    host.uuid, ["10000000c9%02x000%d" % (host.index, p) for p in (1, 2)]
                )
            )

    def set_ports(self, host, wwpns):
        with self.lock:
            self.ports[host.uuid] = [wwn(w) for w in wwpns]

    def add_lun(self, target, lun, scsi_id, size, initiators=None):
        with self.lock:
            self.targets.setdefault(wwn(target), {})[int(lun)] = {
                "scsi_id": scsi_id,
                "size": int(size),
                "initiators": None if initiators is None else [wwn(i) for i in initiators],
            }

    def remove_lun(self, target, lun):
        with self.lock:
            self.targets.get(wwn(target), {}).pop(int(lun), None)

    def zone(self, initiator, target, on=True):
        with self.lock:
            pair = (wwn(initiator), wwn(target))
            if on:
                self.zones.add(pair)
            else:
                self.zones.discard(pair)

    def paths(self, host):
        """What the host sees: [(scsi host n, target index, lun, target wwn, spec)]."""
        ports = self.host_ports(host)
        out = []
        with self.lock:
            for n, wwpn in enumerate(ports):
                seen = [t for t in sorted(self.targets) if (wwpn, t) in self.zones]
                for t_index, target in enumerate(seen):
                    for lun, spec in sorted(self.targets[target].items()):
                        if spec["initiators"] is None or wwpn in spec["initiators"]:
                            out.append((n, t_index, lun, target, dict(spec)))
        return out

    def rescan(self, host):
        """Bring the host's FC view up to date (devscan.adapters forces a bus rescan). As the
        kernel changes sysfs, per entry: an entry that did not change is left as it is, a new
        one appears whole (built aside, then renamed in), a gone one vanishes whole (renamed
        aside, then removed). A reader meets each entry old, new or vanishing under it, never
        half written; a device's SCSI directory is there before its /sys/block entry."""
        ports = self.host_ports(host)
        paths = self.paths(host)
        with self.lock:
            self._write(host, ports, paths)
        return paths

    def _write(self, host, ports, paths):
        # linux drivers/scsi/sd.c sd_probe: a new disk takes the lowest free sd index (sda is
        # the host's own disk) and keeps its name while it exists.
        disks = self.disks.setdefault(host.uuid, {})
        found = [(n, t, lun, target, spec["scsi_id"]) for n, t, lun, target, spec in paths]
        for key in set(disks) - set(found):
            del disks[key]
        for key in found:
            i = 1
            while key not in disks:
                if _sd_name(i) not in disks.values():
                    disks[key] = _sd_name(i)
                i += 1
        # entry (its path under the host root) -> ("file", text) | ("link", target) |
        # ("dir", ((name, entry), ...)), in the order they appear
        view = {}
        for n, wwpn in enumerate(ports):
            view["sys/class/fc_host/host%d" % n] = _dir(
                port_name="0x%s\n" % wwpn,
                node_name="0x20%s\n" % wwpn[2:],
                port_state="Online\n",
                driver=DRIVER + "\n",
            )
        for key, (n, t, lun, target, spec) in zip(found, paths):
            dev = disks[key]
            view.setdefault(
                "sys/class/fc_transport/target%d:0:%d" % (n, t), _dir(port_name="0x%s\n" % target)
            )
            scsi = "sys/devices/pci0000:00/host%d/rport-%d:0-%d/target%d:0:%d/%d:0:%d:%d" % (
                n,
                n,
                t,
                n,
                t,
                n,
                t,
                lun,
            )
            # The kernel's wwid of the disk: an NAA designator, whose scsi_id (SM's SCSIid)
            # is "3" followed by the same hex digits.
            view[scsi] = _dir(vendor="XENVOLSIM\n", wwid="naa.%s\n" % spec["scsi_id"][1:])
            view["sys/block/" + dev] = _dir(device=("link", "../../" + scsi.split("/", 1)[1]))
            view["dev/" + dev] = ("file", "")
            view[
                "dev/disk/by-path/pci-0000:%02x:00.0-fc-0x%s-lun-%s"
                % (n + 1, target, lun_name(lun))
            ] = ("link", "../../" + dev)
            view["dev/disk/by-scsid/%s/%s" % (spec["scsi_id"], dev)] = ("link", "../../../" + dev)
        old = self.written.get(host.uuid, {})
        aside = host.path(".fc-rescan")  # beside sys/ and dev/, out of a reader's way
        shutil.rmtree(aside, ignore_errors=True)
        os.mkdir(aside)
        for rel in reversed(list(old)):  # a disk's /sys/block entry before its SCSI one
            if view.get(rel) != old[rel]:
                _remove(host, rel, aside)
        for rel, entry in view.items():
            if old.get(rel) != entry:
                _put(host, rel, entry, aside)
        self.written[host.uuid] = view


def _dir(**files):
    """A directory entry: its files (text) and links (("link", target)), by name."""
    return (
        "dir",
        tuple(
            (name, ("file", v) if isinstance(v, str) else v) for name, v in sorted(files.items())
        ),
    )


def _make(path, entry):
    kind, content = entry
    if kind == "link":
        os.symlink(content, path)
    elif kind == "file":
        with open(path, "w") as fh:
            fh.write(content)
    else:
        os.mkdir(path)
        for name, sub in content:
            _make(os.path.join(path, name), sub)


def _put(host, rel, entry, aside):
    """Build the entry in `aside` (same file system), then rename it into place."""
    tmp = os.path.join(aside, "new")
    _make(tmp, entry)
    p = host.path(rel)
    if os.path.isdir(p) and not os.path.islink(p):
        _remove(host, rel, aside)  # left by an earlier simulator on this state directory
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.rename(tmp, p)


def _remove(host, rel, aside):
    p = host.path(rel)
    gone = os.path.join(aside, "gone")
    try:
        os.rename(p, gone)
    except OSError:
        return
    if os.path.isdir(gone) and not os.path.islink(gone):
        shutil.rmtree(gone)
    else:
        os.unlink(gone)
    if rel.startswith("dev/disk/by-scsid/"):
        try:
            os.rmdir(os.path.dirname(p))  # the SCSI id's directory, once empty
        except OSError:
            pass


def lun_name(lun):
    """udev path_id format_lun_number: decimal below 256, else the 64-bit SCSI LUN form."""
    if lun < 256:
        return str(lun)
    return "0x%04x%04x00000000" % (lun & 0xFFFF, (lun >> 16) & 0xFFFF)


def _sd_name(i):
    letters = ""
    while True:
        letters = chr(ord("a") + i % 26) + letters
        i = i // 26 - 1
        if i < 0:
            return "sd" + letters


class HBA(StorageManager):
    type = "hba"
    # sm drivers/HBASR.py CAPABILITIES
    capabilities = (
        "SR_PROBE",
        "VDI_CREATE",
        "VDI_DELETE",
        "VDI_ATTACH",
        "VDI_DETACH",
        "VDI_INTRODUCE",
    )

    def __init__(self, sim):
        StorageManager.__init__(self, sim)
        self.fabric = Fabric(sim)

    def _luns(self, host, dconf):
        """HBASR._init_hbadict + _loadvdis: rescan the HBAs that match dconf `type` (devscan
        match_filterstr: a regex anchored at the start of the HBA's driver name; "any" and
        "fcoe" match all), then one VDI per SCSI id (several paths = multipath)."""
        filterstr = dconf.get("type") or "any"
        try:
            matches = filterstr in ("any", "fcoe") or re.search("^" + filterstr, DRIVER)
        except re.error as e:
            raise raw_error(1200, str(e)) from None
        paths = self.fabric.rescan(host)
        if not matches or not self.fabric.host_ports(host):
            return None
        luns: dict = {}
        for _n, _t, lun, _target, spec in paths:
            entry = luns.setdefault(spec["scsi_id"], {"lun": lun, "size": spec["size"], "paths": 0})
            entry["paths"] += 1
        return luns

    def attach(self, host, sr, dconf):
        # HBASR.attach: only multipath activation (SR._mpathHandle); no device check.
        pass

    def scan(self, host, sr, dconf):
        luns = self._luns(host, dconf)
        if luns is None:
            # HBASR.scan: no matching HBA -> self.attached stays False -> SRUnavailable
            raise sm_error("SRUnavailable")
        # HBASR.scan sleeps 2 s after the bus rescan "to allow devices to settle".
        self.delay(2)
        return [self._vdi(scsi_id, e) for scsi_id, e in sorted(luns.items())]

    def _vdi(self, scsi_id, entry):
        # LUNperVDI.RAWVDI._query: uuid = location = md5(SCSIid); LUNid is the LUN number of
        # the (first) path; backend-kind=vbd. RAWVDI.load: managed = False unless the record
        # says otherwise (the scan keeps an existing record's managed flag).
        uuid = vdi_uuid_for(scsi_id)
        return {
            "uuid": uuid,
            "location": uuid,
            "virtual_size": str(entry["size"]),
            "physical_utilisation": str(entry["size"]),
            "managed": False,
            "type": "user",
            "sm_config": {"LUNid": str(entry["lun"]), "SCSIid": scsi_id, "backend-kind": "vbd"},
        }

    def introduce(self, host, sr, dconf, uuid, location, sm_config):
        # RAWVDI.introduce calls HBASR._getLUNbySMconfig, which always raises VDIUnavailable:
        # an hba LUN cannot be introduced (xapi then reports INTERNAL_ERROR).
        raise sm_error("VDIUnavailable")

    def vdi_create(self, host, sr_ref, dconf, size):
        """LUNperVDI.RAWVDI.create: the SR's VDI records (util._getVDIs, in SR.VDIs order), the
        LUNs this host shows (sr._loadvdis: a rescan), and of the records that are unmanaged,
        at least `size` and a LUN shown, the smallest (the first of equal ones) is claimed with
        VDI.set_managed through the SM's own session; its uuid goes back to xapi, which finds
        its record again. None fits: SRNoSpace (SR_BACKEND_FAILURE_44)."""
        shown = set(vdi_uuid_for(s) for s in self._luns(host, dconf) or {})
        db = self.sim.db
        with db.lock:
            best = None
            for ref in db.find("VDI", SR=sr_ref):
                rec = db.raw("VDI", ref)
                fits = int(rec["virtual_size"]) >= size and rec["uuid"] in shown
                if not rec["managed"] and fits:
                    if best is None or int(rec["virtual_size"]) < int(best[1]["virtual_size"]):
                        best = (ref, rec)
            if best is None:
                raise sm_error("SRNoSpace")
            best[1]["managed"] = True
            return best[0]

    def vdi_delete(self, host, sr_ref, dconf, vdi_ref):
        # LUNperVDI.RAWVDI.delete: VDI.set_managed false if managed; every error swallowed.
        with self.sim.db.lock:
            if self.sim.db.exists("VDI", vdi_ref):
                self.sim.db.raw("VDI", vdi_ref)["managed"] = False

    def vdi_attach(self, host, sr, dconf, vdi):
        # RAWVDI.attach: _loadvdis; a LUN no longer seen -> VDIUnavailable.
        luns = self._luns(host, dconf) or {}
        scsi_id = vdi["sm_config"].get("SCSIid")
        if scsi_id not in luns:
            raise sm_error("VDIUnavailable")

    def after_attach(self, host, sr, pbd_rec):
        # sm mpathcount.py (run by the SM when host multipathing is on): multipathed=true
        # and mpath-<SCSIid> = "[active, total]" on the PBD's other_config.
        if self.sim.db.raw("host", host.ref)["other_config"].get("multipathing") != "true":
            return
        luns = self._luns(host, pbd_rec["device_config"]) or {}
        pbd_rec["other_config"]["multipathed"] = "true"
        for scsi_id, e in luns.items():
            pbd_rec["other_config"]["mpath-" + scsi_id] = "[%d, %d]" % (e["paths"], e["paths"])

    def after_detach(self, host, sr, pbd_rec):
        for key in list(pbd_rec["other_config"]):
            if key == "multipathed" or key.startswith("mpath-"):
                pbd_rec["other_config"].pop(key)

    def probe(self, host, dconf):
        # HBASR.probe: the known HBA SRs (sm_config datatype=HBA) as <SRlist>.
        self.fabric.rescan(host)
        found = sorted(
            r["uuid"]
            for r in self.sim.db.tables["SR"].values()
            if r["sm_config"].get("datatype") == "HBA"
        )
        items = "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in found)
        return '<?xml version="1.0" ?>\n<SRlist>\n%s</SRlist>\n' % items
