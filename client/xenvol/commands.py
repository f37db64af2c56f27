"""The xenvol commands that work on a pool: one function per command, each taking the parsed
arguments, a logged-in Client and the names beside uuids, and giving back what the CLI
prints (cli.py parses, logs in and prints; `xenvol check` is check.py, `xenvol pack` is
xenvol_pack's)."""

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import XenAPI

from . import errors
from .client import Client
from .records import Connection
from .version import __version__

# What a command gives back: (data for --json, text, warnings, minimal values[, partial
# failures]).
Result = Tuple[Any, ...]


# ---------------------------------------------------------------------- inputs
def read_file(path: str, what: str, stdin_ok: bool = False) -> str:
    """A file's text; an unreadable file is bad input that names the file."""
    if stdin_ok and path == "-":
        return sys.stdin.read()
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as e:
        raise errors.InvalidArgument(
            "%s: cannot read %s: %s" % (what, path, e.strerror or e), details={"field": what}
        ) from None
    except UnicodeDecodeError:
        raise errors.InvalidArgument(
            "%s: %s is not a text file" % (what, path), details={"field": what}
        ) from None


def _read_info(source: str) -> Any:
    text = read_file(source, "connection_info", stdin_ok=True)
    try:
        return json.loads(text)
    except ValueError as e:
        raise errors.InvalidConnectionInfo(
            "connection_info: %s is not valid JSON (%s)"
            % ("stdin" if source == "-" else source, e),
            details={"field": "connection_info"},
        ) from None


# ---------------------------------------------------------------------- output
def _table(rows: Sequence[Dict[str, Any]], columns: Sequence[Tuple[str, str]]) -> str:
    """columns: (header, key) pairs."""
    if not rows:
        return "(none)"
    cells = [[str(r.get(k, "") if r.get(k) is not None else "") for _h, k in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _k) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (h, _k), w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


class Names:
    """Name labels beside uuids, looked up once each."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.cache: Dict[Tuple[str, str], str] = {}

    def _get(self, cls: str, uuid: Optional[str]) -> str:
        if not uuid:
            return ""
        if (cls, uuid) not in self.cache:
            api = getattr(self.client.x, cls)
            try:
                self.cache[(cls, uuid)] = str(api.get_name_label(api.get_by_uuid(uuid)))
            except XenAPI.Failure:
                self.cache[(cls, uuid)] = "?"
        return self.cache[(cls, uuid)]

    def vm(self, uuid: Optional[str]) -> str:
        return self._get("VM", uuid)

    def host(self, uuid: Optional[str]) -> str:
        return self._get("host", uuid)


def _skipped(skipped: Sequence[errors.XenvolError], names: Names) -> List[str]:
    """Warnings for hosts without a usable plugin (printed, and the exit code says so)."""
    return ["host %s (%s): %s" % (names.host(e.host), e.host, e.message) for e in skipped]


# ---------------------------------------------------------------------- commands
def attach(args: argparse.Namespace, client: Client, names: Names) -> Result:
    att = client.attach(
        _read_info(args.connection_info),
        args.vm,
        args.mountpoint,
        args.read_only,
        not args.no_hotplug,
        placement=args.placement,
    )
    d = dict(att.to_dict(), vm_name=names.vm(att.vm_uuid))
    return (
        d,
        "attached %s to VM %s (%s) as %s (userdevice %s, %s, %s)%s"
        % (
            d["vdi_uuid"],
            d["vm_name"],
            d["vm_uuid"],
            d["device"],
            d["userdevice"],
            d["mode"],
            "plugged" if d["plugged"] else "plugged at next start",
            " [%s]" % d["note"] if d.get("note") else "",
        ),
        [],
        [d["vdi_uuid"]],
    )


def detach(args: argparse.Namespace, client: Client, names: Names) -> Result:
    if args.vdi:
        done = client.detach(vdi=args.vdi)
    elif args.vm and args.mountpoint:
        done = client.detach(vm=args.vm, mountpoint=args.mountpoint)
    else:
        raise errors.InvalidArgument(
            "detach: give VM and MOUNTPOINT, or --vdi", details={"field": "mountpoint"}
        )
    rows = [dict(a.to_dict(), vm_name=names.vm(a.vm_uuid)) for a in done]
    text = (
        "detached:\n"
        + _table(
            rows,
            (
                ("VM", "vm_name"),
                ("VM_UUID", "vm_uuid"),
                ("DEVICE", "device"),
                ("VDI_UUID", "vdi_uuid"),
            ),
        )
        if rows
        else "nothing to detach: not attached"
    )
    return rows, text, [], [r["vdi_uuid"] for r in rows]


def connect(args: argparse.Namespace, client: Client, names: Names) -> Result:
    conn = client.connect(_read_info(args.connection_info), args.host)
    d = dict(conn.to_dict(), host_name=names.host(conn.host_uuid))
    return (
        d,
        "connected VDI %s (SR %s) on host %s (%s)"
        % (d["vdi_uuid"], d["sr_uuid"], d["host_name"], d["host_uuid"]),
        [],
        [d["vdi_uuid"]],
    )


def disconnect(args: argparse.Namespace, client: Client, names: Names) -> Result:
    if args.connection_info:
        res = client.disconnect(connection_info=_read_info(args.connection_info), host=args.host)
    elif args.sr and args.vdi:
        host_uuid = client.host_uuid(args.host)
        res = client.disconnect(Connection(sr_uuid=args.sr, vdi_uuid=args.vdi, host_uuid=host_uuid))
    else:
        raise errors.InvalidArgument(
            "disconnect: give connection_info or --sr and --vdi",
            details={"field": "connection_info"},
        )
    return res, "disconnected: %s" % res.get("note", ""), [], [res.get("vdi_uuid", "")]


def list_(args: argparse.Namespace, client: Client, names: Names) -> Result:
    skipped: List[errors.PluginError] = []
    vm = args.vm or args.vm_option
    found = client.attachments(vm, skipped=skipped)
    rows = [
        dict(a.to_dict(), vm_name=names.vm(a.vm_uuid), host_name=names.host(a.host_uuid))
        for a in found
    ]
    text = _table(
        rows,
        (
            ("VM", "vm_name"),
            ("VM_UUID", "vm_uuid"),
            ("DEVICE", "device"),
            ("MODE", "mode"),
            ("PLUGGED", "plugged"),
            ("TYPE", "driver_volume_type"),
            ("VDI_UUID", "vdi_uuid"),
            ("HOST", "host_name"),
        ),
    )
    return rows, text, _skipped(skipped, names), [r["vdi_uuid"] for r in rows], skipped


def drivers(args: argparse.Namespace, client: Client, names: Names) -> Result:
    skipped: List[errors.PluginError] = []
    result = client.drivers(args.host or args.host_option, skipped=skipped)
    rows: List[Dict[str, Any]] = []
    for host, info in sorted(result.items(), key=lambda hi: (names.host(hi[0]), hi[0])):
        name = names.host(host)
        rows += [dict(d, host=name) for d in info["drivers"]]
        rows += [
            {
                "host": name,
                "driver_volume_type": "(failed)",
                "origin": "%s: %s" % (f["file"], f["error"]),
            }
            for f in info["failed"]
        ]
    text = _table(
        rows,
        (
            ("HOST", "host"),
            ("TYPE", "driver_volume_type"),
            ("SR_TYPE", "sr_type"),
            ("ORIGIN", "origin"),
        ),
    )
    return (
        result,
        text,
        _skipped(skipped, names),
        sorted(set(r["driver_volume_type"] for r in rows)),
        skipped,
    )


def gc(args: argparse.Namespace, client: Client, names: Names) -> Result:
    items = client.gc(dry_run=not args.apply, pool_only=args.pool)
    columns = (("KIND", "kind"), ("ID", "id"), ("WHY", "why"), ("ACTION", "action"))
    if args.apply:
        # Only what gc did; what it found in use (or gone) when it checked again, and
        # what failed, apart.
        removed = [i for i in items if i.get("done")]
        text = "removed:\n%s" % _table(removed, columns) if removed else "removed nothing"
        for label, key in (("left", "skipped"), ("failed", "error")):
            rows = [i for i in items if not i.get("done") and i.get(key)]
            if rows:
                text += "\n%s: %s" % (
                    label,
                    "; ".join("%s %s: %s" % (i["kind"], i["id"], i[key]) for i in rows),
                )
    else:
        text = "would remove (run with --apply):\n%s" % _table(items, columns)
    return items, text if items else "nothing to collect", [], [i["id"] for i in items]


def extend(args: argparse.Namespace, client: Client, names: Names) -> Result:
    if args.vdi:
        out = client.extend(vdi=args.vdi)
    elif args.connection_info:
        out = client.extend(_read_info(args.connection_info))
    else:
        raise errors.InvalidArgument(
            "extend: give connection_info or --vdi", details={"field": "connection_info"}
        )
    text = "VDI %s: %d -> %d bytes (%s)" % (
        out["vdi_uuid"],
        out["old_size"],
        out["new_size"],
        "grew" if out["grew"] else "unchanged",
    )
    for v in out["vbds"]:
        text += "\n  VM %s %s: the guest sees %s" % (
            names.vm(v["vm_uuid"]),
            v["device"] or "(unplugged)",
            v["sees"],
        )
    return out, text, [], [str(out["new_size"])]


def connector(args: argparse.Namespace, client: Client, names: Names) -> Result:
    out = client.connector(vm=args.vm, host=args.host, placement=args.placement)
    rows = [
        dict(h, wwpns=",".join(h.get("wwpns", [])), nqn=h.get("nqn", ""), ips=",".join(h["ips"]))
        for h in out["hosts"]
    ]
    text = _table(
        rows,
        (
            ("HOST", "name_label"),
            ("HOST_UUID", "host_uuid"),
            ("INITIATOR", "initiator"),
            ("WWPNS", "wwpns"),
            ("NQN", "nqn"),
            ("IPS", "ips"),
        ),
    )
    if args.vm:
        text += "\nthe volume will be plugged on every host above: export it to each"
    return out, text, [], [h["initiator"] for h in out["hosts"]]


def migrate(args: argparse.Namespace, client: Client, names: Names) -> Result:
    out = client.migrate(args.vm, args.host)
    text = "migrated VM %s from %s to %s; SRs prepared there: %s%s" % (
        names.vm(out["vm_uuid"]),
        names.host(out["source"]) if out["source"] else "-",
        names.host(out["destination"]),
        ", ".join(out["prepared"]) or "none",
        "".join("\n  source SR %s: %s" % (r["sr_uuid"], r["note"]) for r in out["released"]),
    )
    return out, text, [], [out["vm_uuid"]]


def reconcile(args: argparse.Namespace, client: Client, names: Names) -> Result:
    items = client.reconcile(apply=args.apply)
    text = _table(
        items,
        (
            ("SR_UUID", "sr_uuid"),
            ("HOST_UUID", "host_uuid"),
            ("ACTION", "action"),
            ("ERROR", "error"),
        ),
    )
    return (
        items,
        text if items else "every pool-wide SR is plugged on every live host",
        [],
        [i["sr_uuid"] for i in items],
    )


def version(args: argparse.Namespace, client: Client, names: Names) -> Result:
    result = client.versions()
    rows = sorted(
        (
            dict(v, host=names.host(h), host_uuid=h, conf=_config_state(v))
            for h, v in result.items()
        ),
        key=lambda r: (r["host"], r["host_uuid"]),
    )
    text = "xenvol client %s\n" % __version__ + _table(
        rows,
        (
            ("HOST", "host"),
            ("HOST_UUID", "host_uuid"),
            ("VERSION", "version"),
            ("API_LEVEL", "api_level"),
            ("CONFIG", "conf"),
            ("ERROR", "error"),
        ),
    )
    bad = [r for r in rows if r.get("error")]
    invalid = [
        "host %s: %s" % (r["host"], r["config"].get("error", "xenvol.conf is invalid"))
        for r in rows
        if (r.get("config") or {}).get("state") == "invalid"
    ]
    data = {"client": __version__, "hosts": result}
    return (
        data,
        text,
        invalid,
        [r.get("version", "") for r in rows],
        (
            [errors.PluginMissing("%d host(s) have no usable xenvol plugin" % len(bad))]
            if bad
            else []
        )
        + (
            [errors.InvalidConfig("%d host(s) have an invalid xenvol.conf" % len(invalid))]
            if invalid
            else []
        ),
    )


def _config_state(info: Dict[str, Any]) -> str:
    """A host's /etc/xenvol/xenvol.conf as its plugin's version() reports it."""
    config = info.get("config")
    if not isinstance(config, dict):
        return "" if info.get("error") else "?"  # a plugin before 0.2.0 does not say
    state = str(config.get("state", "?"))
    return {"absent": "defaults", "invalid": "INVALID"}.get(state, state)
