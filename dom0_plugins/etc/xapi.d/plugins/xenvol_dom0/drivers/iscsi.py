"""`iscsi`: a Cinder iSCSI volume as a raw LUN of the LUN-per-VDI `iscsi` SR.

One SR per (portal, target IQN), shared by that target's LUNs; the VDI is the one whose
sm_config LUNid is the volume's LUN. CHAP secrets reach the PBD only as chappassword_secret."""
import uuid as uuidlib

from ..check import host_port

from .base import SR_NAMESPACE, Config, Driver, vdi_by_sm_config, wait_for

LUN_MAX = 16383


class ISCSIDriver(Driver):
    volume_types = ("iscsi",)
    sr_type = "iscsi"
    shared = True

    def validate(self, d):
        portals = d.string_list("target_portals")
        if portals is not None:
            iqns = d.string_list("target_iqns", required=True)
            luns = d.string_list("target_luns", required=True)
            if not len(portals) == len(iqns) == len(luns):
                raise d.bad("target_portals", "target_portals, target_iqns and target_luns must "
                            "have the same length (%d, %d, %d)" % (len(portals), len(iqns), len(luns)))
            paths = []
            for i, (p, q, l) in enumerate(zip(portals, iqns, luns)):
                paths.append(self._path(d, "target_portals[%d]" % i, p, "target_iqns[%d]" % i, q,
                                        "target_luns[%d]" % i, l))
        else:
            paths = []
        if d.has("target_portal") or not paths:
            primary = self._path(d, "target_portal", d.raw("target_portal"), "target_iqn",
                                 d.raw("target_iqn"), "target_lun", d.raw("target_lun"))
        else:
            primary = paths[0]
        host, port, iqn, lun = primary
        # Other paths to the same target become SM's multihomelist.
        others = sorted(set("%s:%d" % (("[%s]" % h) if ":" in h else h, p)
                            for h, p, q, _l in paths if q == iqn and (h, p) != (host, port)))
        cfg = Config(host=host, port=port, iqn=iqn, lun=lun, multihome=others,
                     read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
                     volume_id=d.string("volume_id", required=False, max_len=128),
                     name_label=d.string("name_label", required=False, max_len=128))
        cfg.update(self._chap(d))
        return cfg

    def _path(self, d, pfield, portal, qfield, iqn, lfield, lun):
        if portal in (None, ""):
            raise d.bad(pfield, "is required")
        if not isinstance(portal, str) or len(portal) > 300:
            raise d.bad(pfield, "must be a portal string such as 192.0.2.10:3260")
        host, port = host_port(portal, d.name(pfield))
        if not isinstance(iqn, str):
            raise d.bad(qfield, "is required" if iqn is None else "must be a string")
        d.iqn(qfield, value=iqn)
        lun = _lun(d, lfield, lun)
        return host, port, iqn, lun

    def _chap(self, d):
        out = {}
        method = d.string("auth_method", required=False, max_len=16)
        if method is not None and method.upper() not in ("CHAP", "NONE"):
            raise d.bad("auth_method", "must be CHAP (or absent), not %r" % method)
        if method and method.upper() == "CHAP":
            out["chap_user"] = d.string("auth_username", max_len=256)
            out["chap"] = _password(d, "auth_password")
        user = d.string("target_auth_username", required=False, max_len=256)
        if user:
            out["mutual_user"] = user
            out["mutual"] = _password(d, "target_auth_password")
        dmethod = d.string("discovery_auth_method", required=False, max_len=16)
        if dmethod and dmethod.upper() == "CHAP":
            # SM logs in for discovery with the session credentials; it has no separate ones.
            duser = d.string("discovery_auth_username", max_len=256)
            dpass = _password(d, "discovery_auth_password")
            if duser != out.get("chap_user") or dpass != out.get("chap"):
                raise d.bad("discovery_auth_username", "XenServer's iSCSI SR uses the session "
                            "CHAP credentials for discovery; separate discovery credentials are "
                            "not supported")
        return out

    def sr_uuid(self, cfg):
        return str(uuidlib.uuid5(SR_NAMESPACE, "%s/%s/%s" % (cfg.host, cfg.port, cfg.iqn)))

    def sr_label(self, cfg):
        return cfg.get("name_label") or "xenvol iSCSI %s" % cfg.iqn

    def sm_config(self, cfg):
        return {"target": cfg.host, "targetIQN": cfg.iqn}

    def device_config(self, cfg):
        dc = {"target": cfg.host, "port": str(cfg.port), "targetIQN": cfg.iqn}
        if cfg.get("chap_user"):
            dc["chapuser"] = cfg.chap_user
            dc.update(_password_key("chappassword", cfg.chap))
        if cfg.get("mutual_user"):
            dc["incoming_chapuser"] = cfg.mutual_user
            dc.update(_password_key("incoming_chappassword", cfg.mutual))
        if cfg.multihome:
            dc["multihomed"] = "true"
            dc["multihomelist"] = ",".join(
                ["%s:%d" % (("[%s]" % cfg.host) if ":" in cfg.host else cfg.host, cfg.port)]
                + cfg.multihome)
        return dc

    def find_vdi(self, call, sr, cfg):
        lun = str(cfg.lun)

        def scan_and_look():
            call.do("scanning the iSCSI SR", call.x.SR.scan, sr)
            return vdi_by_sm_config(call, sr, "LUNid", lun, adopt_unmanaged=True)
        return wait_for(call, scan_and_look, "LUN %s of %s" % (lun, cfg.iqn), "data.target_lun")

    def locate_vdi(self, call, sr, cfg):
        return vdi_by_sm_config(call, sr, "LUNid", str(cfg.lun))


def _lun(d, field, value):
    if value is None or value == "":
        raise d.bad(field, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise d.bad(field, "must be an integer LUN")
    if isinstance(value, str):
        if not value.strip().isdigit() or len(value) > 6:
            raise d.bad(field, "must be an integer LUN from 0 to %d, not %r" % (LUN_MAX, value[:20]))
        value = int(value)
    if not 0 <= value <= LUN_MAX:
        raise d.bad(field, "must be from 0 to %d (got %d)" % (LUN_MAX, value))
    return value


def _password(d, key):
    """A password given as the uuid of a XAPI secret (key_secret, preferred) or in clear."""
    if d.has(key + "_secret"):
        return {"secret": d.uuid(key + "_secret")}
    return {"value": d.string(key, max_len=256)}


def _password_key(key, password):
    if "secret" in password:
        return {key + "_secret": password["secret"]}
    return {key: password["value"]}


