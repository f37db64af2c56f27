"""`iscsi`: a Cinder iSCSI volume as a raw LUN of the LUN-per-VDI `iscsi` SR.

One SR per (portal, target IQN), shared by that target's LUNs; the VDI is the one whose
sm_config LUNid is the volume's LUN. CHAP secrets reach the PBD only as chappassword_secret.

Once a target's SR has a PBD, SM logs in with that PBD's credentials whatever a later call
gives; so every connect compares the given credentials with each PBD's (the secrets' values,
read inside dom0, compared in constant time) and refuses any difference with
XENVOL_AUTH_MISMATCH before it changes anything."""

import hmac

from .. import xsecret
from ..check import host_port
from ..errors import AUTH_MISMATCH, XenvolError
from .base import Config, Driver, name_uuid, scan, vdi_by_sm_config, wait_for

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
                raise d.bad(
                    "target_portals",
                    "target_portals, target_iqns and target_luns must "
                    "have the same length (%d, %d, %d)" % (len(portals), len(iqns), len(luns)),
                )
            paths = []
            for i, (p, q, n) in enumerate(zip(portals, iqns, luns)):
                paths.append(
                    self._path(
                        d,
                        "target_portals[%d]" % i,
                        p,
                        "target_iqns[%d]" % i,
                        q,
                        "target_luns[%d]" % i,
                        n,
                    )
                )
        else:
            paths = []
        if d.has("target_portal") or not paths:
            primary = self._path(
                d,
                "target_portal",
                d.raw("target_portal"),
                "target_iqn",
                d.raw("target_iqn"),
                "target_lun",
                d.raw("target_lun"),
            )
        else:
            primary = paths[0]
        host, port, iqn, lun = primary
        # Other paths to the same target and LUN become SM's multihomelist; the iSCSI SR logs
        # in to one target IQN (device_config targetIQN), so a path to another IQN or LUN
        # (3PAR gives each portal its own IQN) cannot be used, and the result says so.
        others, unused = set(), []
        for i, (h, p, q, n) in enumerate(paths):
            if (h, p, q, n) == primary or (h, p) == (host, port) and q == iqn:
                continue
            if q == iqn and n == lun:
                others.add("%s:%d" % (("[%s]" % h) if ":" in h else h, p))
            else:
                unused.append(
                    {
                        "field": "data.target_portals[%d]" % i,
                        "reason": "path to %s "
                        "LUN %d: XenServer's iSCSI SR serves one target IQN and this "
                        "volume's LUN %d of %s; only paths to that are used" % (q, n, lun, iqn),
                    }
                )
        cfg = Config(
            host=host,
            port=port,
            iqn=iqn,
            lun=lun,
            multihome=sorted(others),
            ignored=unused,
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
            volume_id=d.string("volume_id", required=False, max_len=128),
            name_label=d.string("name_label", required=False, max_len=128),
        )
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
        elif d.has("auth_password") or d.has("auth_password_secret"):
            raise d.bad("auth_method", "must be CHAP when a CHAP password is given")
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
                raise d.bad(
                    "discovery_auth_username",
                    "XenServer's iSCSI SR uses the session "
                    "CHAP credentials for discovery; separate discovery credentials are "
                    "not supported",
                )
        return out

    def check_sr(self, call, sr, pbds, cfg):
        _check_credentials(call, sr, pbds, cfg)

    def sr_uuid(self, cfg):
        return name_uuid("%s/%s/%s" % (cfg.host, cfg.port, cfg.iqn))

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
                + cfg.multihome
            )
        return dc

    def find_vdi(self, call, sr, cfg):
        lun = str(cfg.lun)

        def scan_and_look(attempt):
            scan(call, sr, "scanning the iSCSI SR", attempt)
            return vdi_by_sm_config(call, sr, "LUNid", lun)

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
            raise d.bad(
                field, "must be an integer LUN from 0 to %d, not %r" % (LUN_MAX, value[:20])
            )
        value = int(value)
    if not 0 <= value <= LUN_MAX:
        raise d.bad(field, "must be from 0 to %d (got %d)" % (LUN_MAX, value))
    return value


def _password(d, key):
    """A password given as the uuid of a XAPI secret (key_secret, preferred) or in clear."""
    if d.has(key + "_secret"):
        return {"secret": d.uuid(key + "_secret")}
    return {"value": d.password(key)}


def _given(call, password, field):
    if not password:
        return ""
    if "secret" in password:
        known = call.secret_values.get(password["secret"])
        return (
            known
            if known is not None
            else xsecret.value(call, password["secret"], field + "_secret")
        )
    return password["value"]


def _pbd_password(call, dconf, key):
    """The password a PBD holds under key (as key_secret, or in clear on old PBDs)."""
    if dconf.get(key + "_secret"):
        # One filtered read (a uuid xapi wrote; not get_by_uuid then get_value).
        found = call.do(
            "reading the PBD's secret",
            call.x.secret.get_all_records_where,
            'field "uuid" = "%s"' % dconf[key + "_secret"].replace('"', ""),
        )
        # a PBD whose secret is gone matches nothing
        return list(found.values())[0]["value"] if found else None
    return dconf.get(key, "")


def _same(a, b):
    return (
        a is not None
        and b is not None
        and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
    )


def _check_credentials(call, sr, pbds, cfg):
    given = (
        ("chapuser", cfg.get("chap_user") or ""),
        ("chappassword", _given(call, cfg.get("chap"), "data.auth_password")),
        ("incoming_chapuser", cfg.get("mutual_user") or ""),
        ("incoming_chappassword", _given(call, cfg.get("mutual"), "data.target_auth_password")),
    )
    # One PBD, this host's when there is one (what SM logs in with here): every PBD xenvol
    # makes was compared with the SR's existing ones first, so they agree, and the secrets
    # read stay the same whatever the pool's size.
    pbd, rec = sorted(pbds.items(), key=lambda kv: (kv[1]["host"] != call.host, kv[0]))[0]
    dconf = rec["device_config"]
    have = {
        "chapuser": dconf.get("chapuser", ""),
        "incoming_chapuser": dconf.get("incoming_chapuser", ""),
        "chappassword": _pbd_password(call, dconf, "chappassword"),
        "incoming_chappassword": _pbd_password(call, dconf, "incoming_chappassword"),
    }
    # every comparison runs, so the time taken does not say which one differed
    same = [_same(value, have[key]) for key, value in given]
    if not all(same):
        sr_uuid = call.uuids[sr]
        raise XenvolError(
            AUTH_MISMATCH,
            "data.auth_username: the CHAP credentials differ "
            "from those the target's SR %s is set up with on this pool; the "
            "storage would be reached with the SR's, so the call is refused" % sr_uuid,
            field="data.auth_username",
            sr_uuid=sr_uuid,
        )


def _password_key(key, password):
    if "secret" in password:
        return {key + "_secret": password["secret"]}
    return {key: password["value"]}
