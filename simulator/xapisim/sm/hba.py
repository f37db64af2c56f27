"""`hba`: raw LUN per VDI over a simulated Fibre Channel fabric (sm drivers/HBASR.py,
LUNperVDI.py, devscan.py).

The fabric: every host has HBA ports (WWPNs), arrays present LUNs (number, SCSI id, size,
masking by initiator WWPN) on target ports (WWNs), and zones pair initiators with targets.
A rescan writes what a host's kernel would show under its root: /sys/class/fc_host/hostN
(port_name, node_name, port_state), /sys/class/fc_transport/targetN:0:T/port_name, the
disks with their wwid (/sys/block/sdX/device), /dev/sdX, /dev/disk/by-path/pci-…-fc-0x<wwn>-lun-<n> and /dev/disk/by-scsid/<SCSIid>/sdX
(XenServer's udev rules). Set up through the admin API (fc_ports, fc_lun, fc_zone …)."""
import os
import re
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


class Fabric(object):
    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.Lock()
        self.ports = {}     # host uuid -> [wwpn]
        self.targets = {}   # target wwn -> {lun: {"scsi_id", "size", "initiators"}}
        self.zones = set()  # (initiator wwpn, target wwn)
        self.written = {}   # host uuid -> paths written under its root

    def host_ports(self, host):
        with self.lock:
            # Two ports per host unless set: 10:00:00:00:c9:HH:00:0P.
            return list(self.ports.setdefault(
                host.uuid, ["10000000c9%02x000%d" % (host.index, p) for p in (1, 2)]))

    def set_ports(self, host, wwpns):
        with self.lock:
            self.ports[host.uuid] = [wwn(w) for w in wwpns]

    def add_lun(self, target, lun, scsi_id, size, initiators=None):
        with self.lock:
            self.targets.setdefault(wwn(target), {})[int(lun)] = {
                "scsi_id": scsi_id, "size": int(size),
                "initiators": None if initiators is None else [wwn(i) for i in initiators]}

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
        """Rewrite the host's FC view (devscan.adapters forces a bus rescan)."""
        ports = self.host_ports(host)
        paths = self.paths(host)
        with self.lock:
            for rel in self.written.pop(host.uuid, []):
                p = host.path(rel)
                if os.path.islink(p) or os.path.isfile(p):
                    os.unlink(p)
                if rel.startswith("dev/disk/by-scsid/"):
                    try:
                        os.rmdir(os.path.dirname(p))  # the SCSI id's directory, once empty
                    except OSError:
                        pass
            written = []

            def write(rel, text=None, link=None):
                p = host.path(rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                if link is not None:
                    os.symlink(link, p)
                else:
                    with open(p, "w") as fh:
                        fh.write(text)
                written.append(rel)

            for n, wwpn in enumerate(ports):
                base = "sys/class/fc_host/host%d/" % n
                write(base + "port_name", "0x%s\n" % wwpn)
                write(base + "node_name", "0x20%s\n" % wwpn[2:])
                write(base + "port_state", "Online\n")
                write(base + "driver", DRIVER + "\n")
            for i, (n, t, lun, target, spec) in enumerate(paths):
                dev = _sd_name(i)
                tdir = "sys/class/fc_transport/target%d:0:%d/port_name" % (n, t)
                if tdir not in written:
                    write(tdir, "0x%s\n" % target)
                hctl = "%d:0:%d:%d" % (n, t, lun)
                write("dev/" + dev, "")
                write("dev/disk/by-path/pci-0000:%02x:00.0-fc-0x%s-lun-%s"
                      % (n + 1, target, lun_name(lun)), link="../../" + dev)
                write("dev/disk/by-scsid/%s/%s" % (spec["scsi_id"], dev), link="../../../" + dev)
                scsi = "sys/devices/pci0000:00/host%d/rport-%d:0-%d/target%d:0:%d/%s" % (
                    n, n, t, n, t, hctl)
                write(scsi + "/vendor", "XENVOLSIM\n")
                # The kernel's wwid of the disk: an NAA designator, whose scsi_id (SM's SCSIid)
                # is "3" followed by the same hex digits.
                write(scsi + "/wwid", "naa.%s\n" % spec["scsi_id"][1:])
                write("sys/block/%s/device" % dev, link="../../" + scsi.split("/", 1)[1])
            self.written[host.uuid] = written
        return paths


def lun_name(lun):
    """udev path_id format_lun_number: decimal below 256, else the 64-bit SCSI LUN form."""
    if lun < 256:
        return str(lun)
    return "0x%04x%04x00000000" % (lun & 0xffff, (lun >> 16) & 0xffff)


def _sd_name(i):
    letters = ""
    i += 1  # sda is the host's own disk
    while True:
        letters = chr(ord("a") + i % 26) + letters
        i = i // 26 - 1
        if i < 0:
            return "sd" + letters


class HBA(StorageManager):
    type = "hba"
    # sm drivers/HBASR.py CAPABILITIES
    capabilities = ("SR_PROBE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
                    "VDI_INTRODUCE")

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
            raise raw_error(1200, str(e))
        paths = self.fabric.rescan(host)
        if not matches or not self.fabric.host_ports(host):
            return None
        luns = {}
        for n, _t, lun, _target, spec in paths:
            entry = luns.setdefault(spec["scsi_id"], {"lun": lun, "size": spec["size"],
                                                      "paths": 0})
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
        return {"uuid": uuid, "location": uuid, "virtual_size": str(entry["size"]),
                "physical_utilisation": str(entry["size"]), "managed": False, "type": "user",
                "sm_config": {"LUNid": str(entry["lun"]), "SCSIid": scsi_id,
                              "backend-kind": "vbd"}}

    def introduce(self, host, sr, dconf, uuid, location, sm_config):
        # RAWVDI.introduce calls HBASR._getLUNbySMconfig, which always raises VDIUnavailable:
        # an hba LUN cannot be introduced (xapi then reports INTERNAL_ERROR).
        raise sm_error("VDIUnavailable")

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
        found = sorted(r["uuid"] for r in self.sim.db.tables["SR"].values()
                       if r["sm_config"].get("datatype") == "HBA")
        items = "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in found)
        return "<?xml version=\"1.0\" ?>\n<SRlist>\n%s</SRlist>\n" % items
