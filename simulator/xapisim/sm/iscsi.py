"""`iscsi`: the raw LUN-per-VDI SR (ISCSISR/RawISCSISR), over a real userspace login."""

import hashlib
import threading

from ..peers import iscsi_client
from .base import StorageManager, loopback_address
from .errors import sm_error


def vdi_uuid_for(scsi_id):
    """SM names a raw LUN's VDI after the md5 of its SCSI id."""
    h = hashlib.md5(scsi_id.encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


class ISCSI(StorageManager):
    type = "iscsi"
    capabilities = (
        "SR_PROBE",
        "VDI_CREATE",
        "VDI_DELETE",
        "VDI_ATTACH",
        "VDI_DETACH",
        "VDI_INTRODUCE",
    )
    required = (("target", "ConfigTargetMissing"),)

    def __init__(self, sim):
        StorageManager.__init__(self, sim)
        self.lock = threading.Lock()
        self.sessions = {}  # (host uuid, target IQN) -> refcount of attached SRs
        # (host uuid, SCSI id) -> the LUN's size as that host's kernel saw it when the device
        # appeared: a rescan of the adapter (sm scsiutil.rescan) finds new LUNs but leaves a
        # known sd device's capacity, which only a device rescan updates (sm scsiutil
        # refresh_lun_size_by_SCSIid, through the `on-slave` plugin; see sm/onslave.py).
        self.capacity = {}

    # --------------------------------------------------------------- config
    def _config(self, host, dconf):
        self.check_config(dconf)
        initiator = dconf.get("localIQN") or self.sim.db.raw("host", host.ref)["other_config"].get(
            "iscsi_iqn"
        )
        if not initiator:
            raise sm_error("ConfigISCSIIQNMissing")
        port = dconf.get("port", "3260")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise sm_error("ISCSIPort")
        server = dconf["target"].split(",")[0].strip()
        address = loopback_address(server, "ISCSITarget", int(port))
        chap = mutual = None
        password = self.secret(dconf, "chappassword")
        if dconf.get("chapuser") and password:
            chap = (dconf["chapuser"], password)
        incoming = self.secret(dconf, "incoming_chappassword")
        if dconf.get("incoming_chapuser") and incoming:
            mutual = (dconf["incoming_chapuser"], incoming)
        portal = "[%s]:%s" % (address, port) if ":" in address else "%s:%s" % (address, port)
        return initiator, portal, chap, mutual

    def _session(self, host, dconf, iqn=None):
        initiator, portal, chap, mutual = self._config(host, dconf)
        try:
            return iscsi_client.Session(initiator, portal, iqn or dconf["targetIQN"], chap, mutual)
        except iscsi_client.ISCSIError as e:
            text = str(e)
            if text.startswith("connect:"):
                raise sm_error("ISCSITarget", text) from None
            raise sm_error("ISCSILogin", text) from None

    def _need_iqn(self, host, dconf):
        if dconf.get("targetIQN"):
            return
        # SM answers a missing IQN with the discovered targets on stderr.
        listing = ""
        try:
            initiator, portal, chap, mutual = self._config(host, dconf)
            with iscsi_client.Session(initiator, portal, None, chap, mutual) as s:
                listing = _iqn_xml(dconf["target"], s.targets())
        except iscsi_client.ISCSIError:
            pass
        raise sm_error("ConfigTargetIQNMissing", stderr=listing)

    # --------------------------------------------------------------- SR
    def attach(self, host, sr, dconf):
        self._need_iqn(host, dconf)
        self._session(host, dconf).close()
        key = (host.uuid, dconf["targetIQN"])
        with self.lock:
            first = key not in self.sessions
            self.sessions[key] = self.sessions.get(key, 0) + 1
        if first:
            # sm libs/sm/BaseISCSI.py attach: "Allow the devices to settle", time.sleep(5)
            # after a new login.
            self.delay(5)

    def after_attach(self, host, sr, pbd_rec):
        # sm BaseISCSI.attach: iscsi_sessions = the sessions open to the target IQN(s),
        # removed then added on the PBD's other_config.
        paths = [p for p in pbd_rec["device_config"].get("multihomelist", "").split(",") if p]
        pbd_rec["other_config"]["iscsi_sessions"] = str(len(paths) or 1)

    def detach(self, host, sr, dconf):
        key = (host.uuid, dconf.get("targetIQN"))
        with self.lock:
            if self.sessions.get(key, 0) > 1:
                self.sessions[key] -= 1
            else:
                self.sessions.pop(key, None)

    def after_detach(self, host, sr, pbd_rec):
        # sm BaseISCSI.detach: "Remove iscsi_sessions and multipathed keys".
        for key in ("iscsi_sessions", "multipathed"):
            pbd_rec["other_config"].pop(key, None)

    def _logged_in(self, host, dconf):
        with self.lock:
            if (host.uuid, dconf.get("targetIQN")) not in self.sessions:
                raise sm_error("SRUnavailable", "no iSCSI session to %s" % dconf.get("targetIQN"))

    def scan(self, host, sr, dconf):
        self._logged_in(host, dconf)
        # sm BaseISCSI.scan: rescan the adapters, then time.sleep(2) "it seems impossible to
        # tell when a scan's finished".
        self.delay(2)
        out = []
        with self._session(host, dconf) as s:
            try:
                for lun in s.luns():
                    if s.device_type(lun) != iscsi_client.DEVICE_TYPE_DIRECT_ACCESS:
                        continue
                    out.append(self._vdi(s, lun, host))
            except iscsi_client.ISCSIError as e:
                raise sm_error("SRScan", str(e)) from None
        return out

    def _vdi(self, s, lun, host):
        scsi_id = s.scsi_id(lun)
        uuid = vdi_uuid_for(scsi_id)
        with self.lock:
            # sm LUNperVDI.RAWVDI._query: size = scsiutil.getsize(the host's device)
            size = self.capacity.setdefault((host.uuid, scsi_id), s.size(lun))
        # The `iscsi` type is sm's RawISCSISR, whose ISCSIVDI.load sets managed = True (sm commit
        # 8d6cbdc "make sure that the single VDI created is manageable by XAPI"); the generic
        # LUNperVDI.RAWVDI of `hba` leaves new LUNs unmanaged (see local.HBA).
        return {
            "uuid": uuid,
            "location": uuid,
            "virtual_size": str(size),
            "physical_utilisation": "0",
            "managed": True,
            "type": "user",
            "name_label": "",
            "name_description": "",
            "sm_config": {"LUNid": str(lun), "SCSIid": scsi_id, "backend-kind": "vbd"},
        }

    def introduce(self, host, sr, dconf, uuid, location, sm_config):
        if "LUNid" not in sm_config:
            raise sm_error("VDIUnavailable")
        self._logged_in(host, dconf)
        lun = int(sm_config["LUNid"])
        with self._session(host, dconf) as s:
            try:
                if lun not in s.luns():
                    raise sm_error("VDIUnavailable", "LUN %d not found" % lun)
                return self._vdi(s, lun, host)
            except iscsi_client.ISCSIError as e:
                raise sm_error("VDIUnavailable", str(e)) from None

    def vdi_attach(self, host, sr, dconf, vdi):
        self._logged_in(host, dconf)
        lun = int(vdi["sm_config"].get("LUNid", "-1"))
        with self._session(host, dconf) as s:
            try:
                if lun not in s.luns() or s.scsi_id(lun) != vdi["sm_config"].get("SCSIid"):
                    raise sm_error("VDIUnavailable", "LUN %d is gone" % lun)
            except iscsi_client.ISCSIError as e:
                raise sm_error("VDIUnavailable", str(e)) from None

    def refresh_size(self, host, scsi_id):
        """sm scsiutil.refresh_lun_size_by_SCSIid on a host: its devices of the SCSI id
        re-read their capacity from the target. A host without such a device logs it and
        succeeds (True), as sm does."""
        with self.lock:
            if (host.uuid, scsi_id) not in self.capacity:
                return True
            keys = [k for k, n in self.sessions.items() if k[0] == host.uuid and n]
        with self.sim.db.lock:
            dconfs = [
                dict(p["device_config"])
                for p in self.sim.db.tables["PBD"].values()
                if p["host"] == host.ref and p["currently_attached"]
            ]
        for dconf in dconfs:
            if (host.uuid, dconf.get("targetIQN")) not in keys:
                continue
            try:
                with self._session(host, dconf) as s:
                    for lun in s.luns():
                        if s.scsi_id(lun) == scsi_id:
                            with self.lock:
                                self.capacity[(host.uuid, scsi_id)] = s.size(lun)
                            return True
            except iscsi_client.ISCSIError:
                return False
        return True

    def probe(self, host, dconf):
        self._need_iqn(host, dconf)
        known = [
            r
            for r in self.sim.db.tables["SR"].values()
            if r["type"] == "iscsi" and r["sm_config"].get("targetIQN") == dconf["targetIQN"]
        ]
        items = "".join(
            "\t<SR>\n\t\t<UUID>%s</UUID>\n\t\t<Target>%s</Target>\n\t\t<TargetIQN>%s"
            "</TargetIQN>\n\t</SR>\n" % (r["uuid"], dconf["target"], dconf["targetIQN"])
            for r in known
        )
        return '<?xml version="1.0" ?>\n<SRlist>\n%s</SRlist>\n' % items


def _iqn_xml(target, found):
    body, index = "", 0
    for iqn, portals in found:
        for portal in portals:
            addr, _, rest = portal.rpartition(":")
            port = rest.split(",")[0]
            body += "\t<TGT>\n\t\t<Index>%d</Index>\n\t\t<IPAddress>%s</IPAddress>\n" % (
                index,
                addr,
            )
            if port != "3260":
                body += "\t\t<Port>%s</Port>\n" % port
            body += "\t\t<TargetIQN>%s</TargetIQN>\n\t</TGT>\n" % iqn
            index += 1
    body += (
        "\t<TGT>\n\t\t<Index>%d</Index>\n\t\t<IPAddress>%s</IPAddress>\n"
        "\t\t<TargetIQN>*</TargetIQN>\n\t</TGT>\n" % (index, target)
    )
    return '<?xml version="1.0" ?>\n<iscsi-target-iqns>\n%s</iscsi-target-iqns>\n' % body
