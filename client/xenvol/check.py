"""`xenvol check`: whether xenvol will work on a pool, before a volume depends on it.

Each finding is OK, WARN or FAIL with one line of why and one of what to do (docs/check.md
lists every check). Nothing changes in the pool: the pool is read through XAPI, each host's
dom0 through its plugin's read-only `probe`. Only `smoke` (--smoke VM) attaches and detaches
a scratch file volume, and compares the pool's xenvol-relevant state before and after."""

import datetime
import hashlib
import json
import socket
import ssl
import time
import uuid as uuidlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from . import errors, secrets, transport, trust
from .client import SECRET_TTL_GRACE, Client

OK, WARN, FAIL = "OK", "WARN", "FAIL"
# Every check (docs/check.md has a row for each; storage:<type> is one per driver type).
CHECKS = (
    "tls",
    "connect",
    "plugin",
    "plugin-versions",
    "dom0",
    "dom0-python",
    "config",
    "dirs",
    "journals",
    "set-aside",
    "leases",
    "leftovers",
    "clock",
    "client-clock",
    "storage",
    "storage:<type>",
    "iscsi-iqn",
    "iscsi-iqn-unique",
    "multipath",
    "fc",
    "file-roots",
    "xapi-version",
    "xapi-features",
    "ha",
    "smoke",
)
EXIT_CHECK = 9
# Clocks: a skew above this is worth fixing (NTP) whatever else holds.
CLOCK_WARN = 10.0
# Free space in the journal and results directories (journals and results are small).
FREE_FAIL = 1 << 20
FREE_WARN = 64 << 20
# What the volume drivers need of an SM: xapi plugs a VDI through the SM's attach/detach.
REQUIRED_CAPABILITIES = ("VDI_ATTACH", "VDI_DETACH")
# XAPI messages xenvol cannot do without (found with system.listMethods where xapi has it;
# it lists the synchronous wire names only, gen_server.ml).
REQUIRED_METHODS = ("host.call_plugin", "secret.introduce", "secret.destroy", "task.cancel")
# VM.call_host_plugin (native routing) is in xapi from 25.22.0 (datamodel_lifecycle.ml).
NATIVE_ROUTING = "VM.call_host_plugin"
NATIVE_ROUTING_XAPI = (25, 22)
# driver_volume_type -> SR type for when the master's plugin cannot list its drivers.
BUILT_IN = {
    "iscsi": "iscsi",
    "nfs": "nfs",
    "xenapinfs": "nfs",
    "smbfs": "smb",
    "smb": "smb",
    "file": "file",
    "fibre_channel": "hba",
    "glusterfs": "glusterfs",
    "cephfs": "cephfs",
}
# Fields that change without anything being done (compared out of the smoke test).
VOLATILE = ("current_operations", "allowed_operations")
SMOKE_CLASSES = ("SR", "PBD", "VDI", "VBD", "secret")
# gc's items of one host's dom0 (the rest are the pool's, reported by the master's probe):
# dead journals, orphan journal files, damaged journals and results set aside.
LOCAL_KINDS = ("journal", "journal-file", "damaged")


class CheckFailed(errors.XenvolError):
    """At least one finding is FAIL."""

    exit_code = EXIT_CHECK


Finding = Dict[str, Any]


# ---------------------------------------------------------------------- TLS, before login
def tls_finding(
    url: str, verify: bool, cafile: Optional[str], pins: Dict[str, str], timeout: float
) -> Finding:
    """The master's certificate against what the CLI trusts (a CA, or a pinned
    fingerprint in known_certs), judged before any password is sent."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme != "https":
        return finding(
            "tls",
            WARN,
            "%s is plain http: the password and every answer travel in clear" % url,
            "use https://%s/ (xapi serves TLS on 443)" % host,
        )
    hostport = "%s:%d" % (host, port)
    try:
        fpr = transport.peer_fingerprint(host, port, timeout)
    except (OSError, ssl.SSLError) as e:
        return finding("tls", FAIL, "no TLS answer from %s: %s" % (hostport, e), "check --url")
    shown = transport.format_fingerprint(fpr)
    if not verify:
        return finding(
            "tls",
            WARN,
            "--no-verify-tls: the certificate (SHA-256 %s) is not checked" % shown,
            "compare it with the host's and use --trust-fingerprint %s instead" % shown,
        )
    pinned = pins.get(hostport)
    if pinned:
        if transport.normalize_fingerprint(pinned) == fpr:
            return finding(
                "tls",
                OK,
                "the certificate of %s is the one pinned (SHA-256 %s)" % (hostport, shown),
            )
        return finding(
            "tls",
            FAIL,
            "the certificate of %s changed: it is %s, trusted was %s"
            % (hostport, shown, transport.format_fingerprint(pinned)),
            "if the host's certificate was replaced, trust the new one with "
            "--trust-fingerprint %s; otherwise something is in between" % shown,
        )
    try:
        context = ssl.create_default_context(cafile=cafile)
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                pass
    except ssl.SSLCertVerificationError as e:
        return finding(
            "tls",
            FAIL,
            "the certificate of %s (SHA-256 %s) is not trusted here: %s"
            % (hostport, shown, e.verify_message),
            "compare it with the host's (openssl x509 -noout -fingerprint -sha256 -in "
            "/etc/xensource/xapi-ssl.pem), then --trust-fingerprint %s, or give --cafile" % shown,
        )
    except (OSError, ssl.SSLError) as e:
        return finding("tls", FAIL, "TLS with %s failed: %s" % (hostport, e), "check --url")
    return finding("tls", OK, "the certificate of %s is signed by a CA trusted here" % hostport)


def finding(
    check: str,
    status: str,
    why: str,
    todo: str = "",
    host: Optional[Tuple[str, str]] = None,
) -> Finding:
    return {
        "check": check,
        "status": status,
        "host": host[1] if host else "",
        "host_uuid": host[0] if host else "",
        "why": why,
        "todo": todo,
    }


# ---------------------------------------------------------------------- the pool
class PoolCheck:
    """Every check of one pool through a logged-in Client. types: the driver_volume_types
    to judge storage for (None: every driver, a missing SM then only a warning)."""

    def __init__(self, client: Client, types: Optional[Sequence[str]] = None) -> None:
        self.client = client
        self.x = client.x
        self.types = list(types) if types else None
        # A type the admin named must work (FAIL); of every driver, one that cannot is a WARN.
        self.must = FAIL if types else WARN
        self.findings: List[Finding] = []
        # What the pool answered to each probe, for --report.
        self.answers: Dict[str, Any] = {}
        self.hosts: Dict[str, Dict[str, Any]] = {}  # host ref -> record
        self.master = ""
        self.probes: Dict[str, Dict[str, Any]] = {}  # host uuid -> probe answer
        self.plugins: Dict[str, Dict[str, Any]] = {}  # host uuid -> version answer

    def add(
        self, check: str, status: str, why: str, todo: str = "", host: Optional[str] = None
    ) -> None:
        who = (self.hosts[host]["uuid"], self.hosts[host]["name_label"]) if host else None
        self.findings.append(finding(check, status, why, todo, who))

    def name(self, ref: str) -> str:
        return str(self.hosts[ref]["name_label"])

    def ordered(self) -> List[str]:
        """The master first, then by name."""
        return sorted(self.hosts, key=lambda h: (h != self.master, self.name(h)))

    def run(self) -> List[Finding]:
        x = self.x
        pools = x.pool.get_all_records()
        self.answers["pool.get_all_records"] = pools
        pool = list(pools.values())[0]
        self.master = pool["master"]
        self.hosts = x.host.get_all_records()
        self.answers["host.get_all_records"] = self.hosts
        self.check_plugins()
        self.check_dom0()
        self.check_clocks()
        self.check_storage()
        self.check_features()
        self.check_ha(pool)
        return self.findings

    # ------------------------------------------------------------------ plugin
    def check_plugins(self) -> None:
        versions = self.client.versions()
        self.answers["version"] = versions
        seen: Dict[Tuple[str, str], List[str]] = {}
        for h in self.ordered():
            uuid = self.hosts[h]["uuid"]
            info = versions.get(uuid, {})
            self.plugins[uuid] = info
            if "error" in info:
                missing = info.get("code") == "XENAPI_MISSING_PLUGIN"
                self.add(
                    "plugin",
                    FAIL,
                    "the xenvol plugin is not installed" if missing else info["error"],
                    errors.INSTALL_HINT if missing else "upgrade the plugin on this host",
                    h,
                )
                continue
            self.add(
                "plugin",
                OK,
                "xenvol %s answers (API %s)" % (info.get("version"), info.get("api_level")),
                host=h,
            )
            seen.setdefault((str(info.get("version")), str(info.get("api_level"))), []).append(
                self.name(h)
            )
        if len(seen) > 1:
            self.add(
                "plugin-versions",
                WARN,
                "hosts run different plugins: "
                + "; ".join(
                    "%s (API %s) on %s" % (v, a, ", ".join(names))
                    for (v, a), names in sorted(seen.items())
                ),
                "install one pack on every host (xenvol pack install HOST... --iso ...)",
            )
        elif seen:
            (v, a), _names = list(seen.items())[0]
            self.add("plugin-versions", OK, "every host runs xenvol %s (API %s)" % (v, a))

    # ------------------------------------------------------------------ dom0
    def check_dom0(self) -> None:
        self.answers["probe"] = {}
        for h in self.ordered():
            uuid = self.hosts[h]["uuid"]
            if "error" in self.plugins.get(uuid, {"error": ""}):
                continue  # said under plugin
            try:
                out = self.client.probe(uuid, pool=h == self.master)
            except errors.PluginIncompatible:
                self.add(
                    "dom0",
                    WARN,
                    "the plugin (%s) has no probe function: its dom0 is not checked"
                    % self.plugins[uuid].get("version"),
                    "upgrade the plugin on this host",
                    h,
                )
                continue
            except errors.XenvolError as e:
                self.add("dom0", FAIL, "probe failed: %s" % e.message, "see /var/log/xenvol.log", h)
                continue
            self.answers["probe"][uuid] = out
            self.probes[uuid] = out
            self.check_python(h, out)
            self.check_config(h, out)
            self.check_dirs(h, out)
            self.check_leftovers(h, out)

    def check_python(self, h: str, out: Dict[str, Any]) -> None:
        version = str(out.get("python", ""))
        try:
            ok = tuple(int(p) for p in version.split(".")[:2]) >= (3, 6)
        except ValueError:
            ok = False
        if ok:
            self.add("dom0-python", OK, "the plugin runs under Python %s" % version, host=h)
        else:
            self.add(
                "dom0-python",
                FAIL,
                "the plugin runs under Python %r; it needs 3.6 or later" % version,
                "xenvol supports XenServer / XCP-ng 8.3 and later",
                h,
            )

    def check_config(self, h: str, out: Dict[str, Any]) -> None:
        config = out.get("config") or {}
        state = config.get("state")
        if state == "invalid":
            problems = config.get("problems") or [{}]
            self.add(
                "config",
                FAIL,
                str(problems[0].get("message", "xenvol.conf is invalid"))
                + (" (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""),
                "fix /etc/xenvol/xenvol.conf on this host (every problem: xe "
                "host-call-plugin host-uuid=%s plugin=xenvol fn=check_config)"
                % self.hosts[h]["uuid"],
                h,
            )
        elif state == "absent":
            self.add("config", OK, "no /etc/xenvol/xenvol.conf: the defaults", host=h)
        else:
            self.add("config", OK, "/etc/xenvol/xenvol.conf is valid", host=h)

    def check_dirs(self, h: str, out: Dict[str, Any]) -> None:
        bad, low, good = [], [], []
        for d in out.get("dirs", []):
            where = "%s %s" % (d["name"], d["path"])
            free = d.get("free_bytes")
            if d.get("problem"):
                bad.append("%s %s" % (where, d["problem"]))
            elif d.get("read_only") or not d.get("writable"):
                bad.append(
                    "%s is not writable%s" % (where, " (read-only)" if d.get("read_only") else "")
                )
            elif free is not None and free < FREE_FAIL:
                bad.append("%s has %s free" % (where, _size(free)))
            elif free is not None and free < FREE_WARN:
                low.append("%s has %s free" % (where, _size(free)))
            else:
                good.append(where)
        if bad:
            self.add(
                "dirs",
                FAIL,
                "; ".join(bad),
                "every changing call journals there first: make it a writable directory "
                "with space (dom0's /var)",
                h,
            )
        elif low:
            self.add("dirs", WARN, "; ".join(low), "free space in dom0's /var", h)
        else:
            free = min((d.get("free_bytes") or 0) for d in out.get("dirs", [])) if good else 0
            self.add("dirs", OK, "%s writable, %s free" % (", ".join(good), _size(free)), host=h)

    def check_leftovers(self, h: str, out: Dict[str, Any]) -> None:
        items = out.get("leftovers")
        if items is None:
            self.add(
                "journals",
                WARN,
                "not known while xenvol.conf is invalid",
                "fix xenvol.conf, then run xenvol check again",
                h,
            )
            return
        journals = [i for i in items if i["kind"] in ("journal", "journal-file")]
        aside = [i for i in items if i["kind"] == "damaged"]
        leases = [i for i in items if i["kind"] == "lease"]
        others = [i for i in items if i["kind"] not in LOCAL_KINDS + ("lease",)]
        if aside:
            self.add(
                "set-aside",
                WARN,
                "; ".join("%s: %s" % (i["id"], i["why"]) for i in aside),
                "check what it describes (xenvol gc lists it), then remove the file",
                h,
            )
        else:
            self.add("set-aside", OK, "no damaged journal or result set aside", host=h)
        if journals:
            self.add(
                "journals",
                WARN,
                "; ".join(i["why"] for i in journals),
                "the next changing call on this host rolls it back (or finishes its "
                "detach); now: xenvol gc --apply",
                h,
            )
        else:
            self.add("journals", OK, "no dead operation's journal waits", host=h)
        if h != self.master:
            return
        if leases:
            self.add(
                "leases",
                WARN,
                "; ".join("SR %s: lease %s" % (i["id"], i["why"]) for i in leases),
                "the next call that needs the SR breaks it; now: xenvol gc --apply",
            )
        else:
            self.add("leases", OK, "no SR lease of a dead operation")
        if others:
            self.add(
                "leftovers",
                WARN,
                "; ".join("%s %s: %s" % (i["kind"], i["id"], i["why"]) for i in others),
                "xenvol gc lists them, xenvol gc --apply removes them",
            )
        else:
            self.add("leftovers", OK, "nothing xenvol made is left unused")

    # ------------------------------------------------------------------ clocks
    def check_clocks(self) -> None:
        """Each host against the master, and this machine against the master, each reading
        placed at the midpoint of its round trip (whole seconds on the wire)."""
        readings: Dict[str, Tuple[float, float]] = {}
        for h in self.ordered():
            t0 = time.time()
            try:
                server = _servertime(self.x.host.get_servertime(h))
            except (XenAPI.Failure, ValueError) as e:
                self.add("clock", WARN, "host.get_servertime: %s" % e, "", h)
                continue
            t1 = time.time()
            readings[h] = (server - (t0 + t1) / 2, (t1 - t0) / 2 + 1)
        self.answers["host.get_servertime"] = dict(
            (self.hosts[h]["uuid"], {"offset_from_client": round(o, 3), "within": round(e, 3)})
            for h, (o, e) in readings.items()
        )
        if self.master not in readings:
            return
        master_offset, master_err = readings[self.master]
        for h in self.ordered():
            if h == self.master or h not in readings:
                continue
            skew = readings[h][0] - master_offset
            stale = float(self._setting(h, "lease_stale_after", 900))
            limit = stale / 2
            text = "%+d s against the master (±%d s)" % (
                round(skew),
                round(readings[h][1] + master_err),
            )
            # A named lease is never judged by its age; a lease in no known form (a plugin
            # before API 1.2, another tool) ages out by the reading host's clock (lease.py).
            if abs(skew) > limit:
                self.add(
                    "clock",
                    FAIL,
                    text + ": above lease_stale_after/2 (%.0f s): a lease in no known form (a "
                    "plugin before 0.2.0) is taken for stale on a host whose clock runs ahead, "
                    "and broken while held" % limit,
                    "sync dom0's clock with NTP on every host (chronyd)",
                    h,
                )
            elif abs(skew) > CLOCK_WARN:
                self.add(
                    "clock",
                    WARN,
                    text + ": logs disagree, and a lease in no known form ages out by each "
                    "host's clock (lease_stale_after %.0f s)" % stale,
                    "sync dom0's clock with NTP on every host",
                    h,
                )
            else:
                self.add("clock", OK, text, host=h)
        offset = master_offset
        text = "this machine is %+d s off the pool (±%d s)" % (round(-offset), round(master_err))
        # Client-made secrets carry xenvol-ttl, timed by gc's own monotonic clock; only
        # plugins before API 1.2 compare xenvol-expires, written in this machine's clock.
        older = sorted(
            self.name(h)
            for h in self.hosts
            if _version(str(self.plugins.get(self.hosts[h]["uuid"], {}).get("api_level", "")))
            in ((1, 0), (1, 1))
        )
        if offset > SECRET_TTL_GRACE and older:
            self.add(
                "client-clock",
                FAIL,
                text + ": the plugin on %s (before 0.2.0) expires client-made secrets by this "
                "machine's clock (xenvol-expires): with the pool %d s ahead, above their %d s "
                "grace, its gc can destroy one an attach still needs"
                % (", ".join(older), round(offset), SECRET_TTL_GRACE),
                "sync this machine's clock with NTP, and upgrade those hosts",
            )
        elif abs(offset) > CLOCK_WARN:
            self.add(
                "client-clock",
                WARN,
                text + ": logs and reports disagree; secrets the client makes carry "
                "xenvol-expires in this machine's clock (read by plugins before 0.2.0, "
                "%d s grace)" % SECRET_TTL_GRACE,
                "sync this machine's clock with NTP",
            )
        else:
            self.add("client-clock", OK, text)

    def _setting(self, h: str, key: str, default: Any) -> Any:
        probe = self.probes.get(self.hosts[h]["uuid"]) or {}
        return (probe.get("settings") or {}).get(key, default)

    # ------------------------------------------------------------------ storage
    def check_storage(self) -> None:
        sms = self.x.SM.get_all_records()
        self.answers["SM.get_all_records"] = sms
        by_type = dict((rec["type"], rec) for rec in sms.values())
        mapping = self._driver_types()
        types = self.types or sorted(mapping)
        for t in types:
            sr_type = mapping.get(t)
            if sr_type is None:
                self.add(
                    "storage",
                    FAIL,
                    "%s: no such volume driver (known: %s)" % (t, ", ".join(sorted(mapping))),
                    "name a type xenvol drivers lists",
                )
                continue
            if not sr_type:
                continue  # xensm: any SM type, named by each volume
            rec = by_type.get(sr_type)
            if rec is None:
                self.add(
                    "storage:%s" % t,
                    FAIL if self.types else WARN,
                    "SM type %s is not registered: %s volumes cannot attach" % (sr_type, t),
                    "install the storage manager for %s on every host (XCP-ng: yum install "
                    "its sm package) and restart the toolstack" % sr_type,
                )
                continue
            caps = set(rec.get("capabilities") or []) | set(rec.get("features") or {})
            lacking = [c for c in REQUIRED_CAPABILITIES if c not in caps]
            if lacking:
                self.add(
                    "storage:%s" % t,
                    FAIL,
                    "SM type %s lacks %s" % (sr_type, ", ".join(lacking)),
                    "a storage manager without VDI attach/detach cannot serve volumes",
                )
            else:
                self.add(
                    "storage:%s" % t,
                    OK,
                    "SM %s %s registered with %s"
                    % (sr_type, rec.get("version", ""), ", ".join(REQUIRED_CAPABILITIES)),
                )
        if "iscsi" in types:
            self.check_iqns()
        if "iscsi" in types or "fibre_channel" in types:
            self.check_multipath()
        if "fibre_channel" in types:
            self.check_fc()
        if "file" in types:
            self.check_file_roots()

    def check_file_roots(self) -> None:
        for h in self.ordered():
            probe = self.probes.get(self.hosts[h]["uuid"])
            if probe is None:
                continue
            roots = probe.get("file_roots") or []
            there = [r["path"] for r in roots if r.get("exists")]
            if there:
                self.add("file-roots", OK, "file volumes under %s" % ", ".join(there), host=h)
            else:
                self.add(
                    "file-roots",
                    self.must,
                    "no file_roots directory exists (%s)" % ", ".join(r["path"] for r in roots),
                    "file volumes cannot attach here: mkdir -p one, or set file_roots in "
                    "/etc/xenvol/xenvol.conf",
                    h,
                )

    def _driver_types(self) -> Dict[str, str]:
        """driver_volume_type -> SR type ("" for any), as the master's plugin lists them."""
        try:
            out = self.client.drivers(self.hosts[self.master]["uuid"])
        except errors.XenvolError:
            return dict(BUILT_IN)
        self.answers["list_drivers"] = out
        drivers = list(out.values())[0]["drivers"] if out else []
        return dict(
            (d["driver_volume_type"], d.get("sr_type") or "")
            for d in drivers
            if d.get("driver_volume_type")
        ) or dict(BUILT_IN)

    def check_iqns(self) -> None:
        owners: Dict[str, List[str]] = {}
        for h in self.ordered():
            rec = self.hosts[h]
            iqn = rec["other_config"].get("iscsi_iqn") or rec.get("iscsi_iqn") or ""
            if not iqn:
                self.add(
                    "iscsi-iqn",
                    self.must,
                    "no iSCSI initiator IQN",
                    "xe host-param-set uuid=%s other-config:iscsi_iqn=iqn.YYYY-MM.domain:name"
                    % rec["uuid"],
                    h,
                )
                continue
            owners.setdefault(iqn, []).append(self.name(h))
            found = (self.probes.get(rec["uuid"]) or {}).get("initiator_file")
            if found is not None and found != iqn:
                self.add(
                    "iscsi-iqn",
                    WARN,
                    "xapi says %s but /etc/iscsi/initiatorname.iscsi says %r" % (iqn, found),
                    "set it again through xapi (xe host-param-set ... other-config:iscsi_iqn=)",
                    h,
                )
            else:
                self.add("iscsi-iqn", OK, "initiator %s" % iqn, host=h)
        dups = dict((iqn, names) for iqn, names in owners.items() if len(names) > 1)
        if dups:
            self.add(
                "iscsi-iqn-unique",
                FAIL,
                "; ".join(
                    "%s is the IQN of %s" % (iqn, ", ".join(n)) for iqn, n in sorted(dups.items())
                ),
                "give each host its own IQN (xe host-param-set ... other-config:iscsi_iqn=): "
                "an array cannot tell such hosts apart, their sessions and LUN masking collide",
            )
        elif owners:
            self.add("iscsi-iqn-unique", OK, "every host has its own IQN")

    def check_multipath(self) -> None:
        states: Dict[bool, List[str]] = {}
        for h in self.ordered():
            rec = self.hosts[h]
            on = bool(rec.get("multipathing")) or rec["other_config"].get("multipathing") == "true"
            states.setdefault(on, []).append(self.name(h))
        if len(states) > 1:
            self.add(
                "multipath",
                WARN,
                "multipathing is on for %s, off for %s"
                % (", ".join(states[True]), ", ".join(states[False])),
                "set it the same on every host (host in maintenance mode: xe host-param-set "
                "uuid=... multipathing=true)",
            )
        else:
            self.add(
                "multipath",
                OK,
                "multipathing is %s on every host" % ("on" if list(states)[0] else "off"),
            )

    def check_fc(self) -> None:
        for h in self.ordered():
            probe = self.probes.get(self.hosts[h]["uuid"])
            if probe is None:
                continue
            ports = probe.get("fc_ports") or []
            online = [p for p in ports if p.get("port_state", "Online") == "Online"]
            if not ports:
                self.add(
                    "fc",
                    self.must,
                    "no FC HBA port (/sys/class/fc_host is empty)",
                    "fibre_channel volumes cannot attach on this host: fit or enable an HBA",
                    h,
                )
            elif not online:
                self.add(
                    "fc",
                    WARN,
                    "no FC port is Online: %s"
                    % ", ".join("%s %s" % (p["port_name"], p.get("port_state")) for p in ports),
                    "check the cabling and the switch",
                    h,
                )
            else:
                self.add("fc", OK, "WWPNs %s" % ", ".join(p["port_name"] for p in online), host=h)

    # ------------------------------------------------------------------ xapi
    def check_features(self) -> None:
        apis: Dict[Tuple[Any, Any, str], List[str]] = {}
        for h in self.ordered():
            rec = self.hosts[h]
            sw = rec.get("software_version") or {}
            apis.setdefault(
                (rec.get("API_version_major"), rec.get("API_version_minor"), sw.get("xapi", "?")),
                [],
            ).append(self.name(h))
        if len(apis) > 1:
            self.add(
                "xapi-version",
                WARN,
                "hosts differ: "
                + "; ".join(
                    "API %s.%s, xapi %s on %s" % (a, b, v, ", ".join(n))
                    for (a, b, v), n in sorted(apis.items())
                ),
                "finish the rolling upgrade before attaching volumes",
            )
        else:
            (a, b, v), _n = list(apis.items())[0]
            self.add("xapi-version", OK, "API %s.%s, xapi %s on every host" % (a, b, v))
        methods = self._list_methods()
        master_xapi = (self.hosts[self.master].get("software_version") or {}).get("xapi", "")
        if methods is None:
            native = _version(master_xapi) >= NATIVE_ROUTING_XAPI
            self.add(
                "xapi-features",
                WARN,
                "feature detection unavailable (system.listMethods unknown to this xapi); "
                "by its version (%s): %s"
                % (
                    master_xapi or "?",
                    "VM.call_host_plugin expected (native routing)"
                    if native
                    else "no VM.call_host_plugin (routing by host)",
                ),
                "nothing to do; xenvol falls back by itself",
            )
            return
        missing = [m for m in REQUIRED_METHODS if m not in methods]
        if missing:
            self.add(
                "xapi-features",
                FAIL,
                "xapi lacks %s" % ", ".join(missing),
                "xenvol needs XenServer / XCP-ng 8.3 or later",
            )
            return
        self.add(
            "xapi-features",
            OK,
            "%d methods; %s"
            % (
                len(methods),
                'VM.call_host_plugin: native routing available (Client(routing="native"))'
                if NATIVE_ROUTING in methods
                else "no VM.call_host_plugin: routing by host",
            ),
        )

    def _list_methods(self) -> Optional[List[str]]:
        """system.listMethods, None where xapi does not know it (MESSAGE_METHOD_UNKNOWN)."""
        try:
            out = self.client.session.system.listMethods()
        except (XenAPI.Failure, OSError, ValueError) as e:
            self.answers["system.listMethods"] = {"error": str(e)}
            return None
        except Exception as e:  # an xmlrpc Fault and kin: the same, feature detection is off
            self.answers["system.listMethods"] = {"error": "%s: %s" % (type(e).__name__, e)}
            return None
        if isinstance(out, dict):  # a XAPI failure: {"Status": "Failure", ...}
            self.answers["system.listMethods"] = out
            return None
        methods = [str(m) for m in out]
        self.answers["system.listMethods"] = {"count": len(methods)}
        return methods

    def check_ha(self, pool: Dict[str, Any]) -> None:
        if not pool.get("ha_enabled"):
            self.add("ha", OK, "HA is off")
            return
        placements = set(self._setting(h, "placement", "host") for h in self.hosts)
        if placements == {"pool"}:
            self.add("ha", OK, "HA is on; every host's placement is pool")
        else:
            self.add(
                "ha",
                WARN,
                "HA is on and placement is host: a VM HA restarts on another host finds its "
                "volume's SR unplugged there",
                'set "placement": "pool" in every host\'s xenvol.conf (or attach with '
                "--placement pool), then xenvol reconcile --apply",
            )


def _servertime(value: Any) -> float:
    """A XAPI datetime (xmlrpc DateTime or its text, 20261207T03:35:22Z) as a timestamp."""
    text = str(getattr(value, "value", value)).rstrip("Z")
    return (
        datetime.datetime.strptime(text, "%Y%m%dT%H:%M:%S")
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
    )


def _version(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return ()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.0f %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0
    return str(n)


# ---------------------------------------------------------------------- smoke
def smoke(client: Client, vm: str) -> Tuple[Finding, Dict[str, Any]]:
    """Attach and detach a scratch file volume to a halted test VM as a compute driver
    does (Client.attach / Client.detach), then compare the pool's SRs, PBDs, VDIs, VBDs and
    secrets with what they were. Refuses a running VM, a control domain and a template."""
    x = client.x
    ref = _vm(client, vm)
    rec = x.VM.get_record(ref)
    if rec["is_control_domain"]:
        raise errors.InvalidArgument(
            "--smoke: %s is a control domain (dom0); name a halted test VM" % vm,
            details={"field": "smoke"},
        )
    if rec["is_a_template"]:
        raise errors.InvalidArgument(
            "--smoke: %s is a template; name a halted test VM" % vm, details={"field": "smoke"}
        )
    if rec["power_state"] != "Halted":
        raise errors.InvalidArgument(
            "--smoke: VM %s is %s; the smoke test attaches only to a halted test VM"
            % (rec["name_label"], rec["power_state"]),
            details={"field": "smoke"},
        )
    host_ref = client.host_for_vm(ref)
    host_uuid = x.host.get_uuid(host_ref)
    host_name = x.host.get_name_label(host_ref)
    who = (host_uuid, host_name)
    before = pool_state(x)
    volume = str(uuidlib.uuid4())
    report: Dict[str, Any] = {"vm_uuid": rec["uuid"], "host_uuid": host_uuid, "volume": volume}
    steps: List[str] = []
    try:
        made = client.scratch_volume(host_uuid, "create", volume)
    except errors.XenvolError as e:
        report["error"] = "making the scratch volume: %s" % e.message
    else:
        steps.append("made %s" % made["path"])
        try:
            info = {
                "driver_volume_type": "file",
                "data": {"path": made["path"], "vdi_uuid": volume},
            }
            att = client.attach(info, rec["uuid"])
            steps.append("attached as userdevice %s" % att.userdevice)
            client.detach(attachment=att)
            steps.append("detached")
        except errors.XenvolError as e:
            report["error"] = e.message
        finally:
            try:
                client.scratch_volume(host_uuid, "remove", volume)
                steps.append("removed it")
            except errors.XenvolError as e:
                report.setdefault("error", "removing the scratch volume: %s" % e.message)
    report["steps"] = steps
    changes = compare(before, pool_state(x))
    report["changes"] = changes
    if "error" in report:
        return (
            finding(
                "smoke",
                FAIL,
                "%s: %s" % (", ".join(steps) or "nothing done", report["error"]),
                "the other findings say why; xenvol gc lists anything left",
                who,
            ),
            report,
        )
    if changes:
        return (
            finding(
                "smoke",
                FAIL,
                "the pool changed: %s" % "; ".join(changes[:5]),
                "xenvol gc --apply removes what xenvol left; report it as a bug",
                who,
            ),
            report,
        )
    return (
        finding(
            "smoke",
            OK,
            "VM %s: %s; SRs, PBDs, VDIs, VBDs and secrets as before"
            % (rec["name_label"], ", ".join(steps)),
            host=who,
        ),
        report,
    )


def _vm(client: Client, vm: str) -> str:
    x = client.x
    try:
        return str(x.VM.get_by_uuid(vm))
    except XenAPI.Failure:
        pass
    refs = x.VM.get_by_name_label(vm)
    if len(refs) != 1:
        raise errors.VMNotFound("--smoke: no single VM %r" % vm, details={"field": "smoke"})
    return str(refs[0])


def pool_state(x: Any) -> Dict[str, Dict[str, Any]]:
    """{class: {uuid: record}} of what an attach can change (volatile fields out; a secret's
    value only as its digest)."""
    out: Dict[str, Dict[str, Any]] = {}
    for cls in SMOKE_CLASSES:
        table = {}
        for rec in getattr(x, cls).get_all_records().values():
            rec = dict((k, v) for k, v in rec.items() if k not in VOLATILE)
            if cls == "secret":
                rec["value"] = hashlib.sha256(str(rec.get("value", "")).encode()).hexdigest()
            table[rec["uuid"]] = rec
        out[cls] = table
    return out


def compare(before: Dict[str, Dict[str, Any]], after: Dict[str, Dict[str, Any]]) -> List[str]:
    out = []
    for cls in SMOKE_CLASSES:
        old, new = before.get(cls, {}), after.get(cls, {})
        out += ["%s %s appeared" % (cls, u) for u in sorted(set(new) - set(old))]
        out += ["%s %s vanished" % (cls, u) for u in sorted(set(old) - set(new))]
        for u in sorted(set(old) & set(new)):
            fields = sorted(k for k in set(old[u]) | set(new[u]) if old[u].get(k) != new[u].get(k))
            if fields:
                out.append("%s %s changed: %s" % (cls, u, ", ".join(fields)))
    return out


# ---------------------------------------------------------------------- the command
def summary(findings: Sequence[Finding]) -> Dict[str, int]:
    return dict((s, sum(1 for f in findings if f["status"] == s)) for s in (OK, WARN, FAIL))


def text(findings: Sequence[Finding]) -> str:
    width = max([len(f["check"]) for f in findings] + [5])
    hw = max([len(f["host"]) for f in findings] + [4])
    lines = []
    for f in findings:
        line = "%-4s  %-*s  %-*s  %s" % (
            f["status"],
            width,
            f["check"],
            hw,
            f["host"] or "pool",
            f["why"],
        )
        if f["todo"] and f["status"] != OK:
            line += "\n%s  -> %s" % (" " * (10 + width + hw), f["todo"])
        lines.append(line)
    s = summary(findings)
    lines.append("%d FAIL, %d WARN, %d OK" % (s[FAIL], s[WARN], s[OK]))
    return "\n".join(lines)


def run(
    url: str,
    connect: Callable[[], Client],
    verify: bool,
    cafile: Optional[str],
    pins: Dict[str, str],
    timeout: float,
    types: Optional[Sequence[str]] = None,
    smoke_vm: Optional[str] = None,
) -> Dict[str, Any]:
    """Every check; {"findings", "summary", "answers", "smoke"?}. The TLS check comes first:
    on a FAIL there nothing else is sent (no password to an untrusted peer)."""
    findings = [tls_finding(url, verify, cafile, pins, timeout)]
    out: Dict[str, Any] = {"findings": findings, "answers": {}}
    if findings[0]["status"] == FAIL:
        findings.append(
            finding("connect", FAIL, "not attempted: the TLS check failed (no password sent)")
        )
    else:
        with connect() as client:
            check = PoolCheck(client, types)
            try:
                findings += check.run()
                if smoke_vm:
                    found, out["smoke"] = smoke(client, smoke_vm)
                    findings.append(found)
            finally:
                out["answers"] = check.answers
    out["summary"] = summary(findings)
    return out


def report(result: Dict[str, Any], url: str, client_version: str) -> Dict[str, Any]:
    """--report: every finding, the versions, what the pool answered; secrets scrubbed."""
    answers = result.get("answers", {})
    hosts = answers.get("host.get_all_records", {})
    versions: Dict[str, Any] = {"xenvol_client": client_version, "hosts": {}}
    for rec in hosts.values():
        uuid = rec["uuid"]
        probe = answers.get("probe", {}).get(uuid, {})
        plugin = answers.get("version", {}).get(uuid, {})
        versions["hosts"][rec["name_label"]] = {
            "uuid": uuid,
            "xapi": (rec.get("software_version") or {}).get("xapi"),
            "product": (rec.get("software_version") or {}).get("product_version"),
            "api": "%s.%s" % (rec.get("API_version_major"), rec.get("API_version_minor")),
            "xenvol_plugin": plugin.get("version"),
            "api_level": plugin.get("api_level"),
            "dom0_python": probe.get("python"),
            "packages": probe.get("packages"),
        }
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (":%d" % parts.port if parts.port else "")
    return scrub(
        {
            "xenvol_check": 1,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "url": urlunsplit((parts.scheme, netloc, parts.path, "", "")),
            "summary": result["summary"],
            "findings": result["findings"],
            "versions": versions,
            "smoke": result.get("smoke"),
            "answers": answers,
        }
    )


def scrub(obj: Any) -> Any:
    """Values of secret-bearing keys masked, at any depth (xenvol's one list of them)."""
    if isinstance(obj, dict):
        return dict(
            (k, "***" if secrets.is_secret_key(k) and v not in ("", None) else scrub(v))
            for k, v in obj.items()
        )
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)


def command(
    args: Any, url: str, pins: Dict[str, str], connect: Callable[[], Client], version: str
) -> Tuple[Any, ...]:
    """`xenvol check` as the CLI runs it: (data, text, warnings, minimal, partial)."""
    pins, _pinned = trust.with_fingerprint(url, args.trust_fingerprint, pins)
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    result = run(
        url, connect, not args.no_verify_tls, args.cafile, pins, args.timeout, types, args.smoke
    )
    shown = text(result["findings"])
    if args.report:
        try:
            with open(args.report, "w") as fh:
                fh.write(dumps(report(result, url, version)) + "\n")
        except OSError as e:
            raise errors.InvalidArgument(
                "--report: cannot write %s: %s" % (args.report, e.strerror or e),
                details={"field": "report"},
            ) from None
        shown += "\nreport written to %s" % args.report
    data = dict((k, result[k]) for k in ("findings", "summary", "smoke") if k in result)
    failed = result["summary"][FAIL]
    worst = FAIL if failed else WARN if result["summary"][WARN] else OK
    partial = [CheckFailed("%d check(s) failed" % failed, "XENVOL_CHECK_FAILED")] if failed else []
    return data, shown, [], [worst], partial
