"""`xenvol`: attach and detach volumes from the command line.

Connection: --url/--username, or $XENVOL_URL, $XENVOL_USERNAME, $XENVOL_PASSWORD; a URL without
a scheme means https:// (as `xe -s HOST` does). Without a password in the environment it is
read from --password-file or asked for at a prompt; it is never taken on the command line.
connection_info comes from a file or `-` (stdin). A host's self-signed certificate is trusted
by its SHA-256 fingerprint (--trust-fingerprint, remembered in ~/.config/xenvol/known_certs).

Exit codes: 0 done, 1 other errors, 2 bad input, 3 not found, 4 storage/backend failure,
5 plugin missing or incompatible (on any host: the others are still listed), 6 pack failure,
7 cannot connect or log in (network, timeout, certificate, credentials), 8 no answer in time
(the operation may still complete; `xenvol list` tells), 9 `xenvol check` found a FAIL,
130 interrupted. A closed output pipe ends quietly.

Ctrl-C (or SIGINT: `timeout -s INT`, a script's kill -INT) during attach, detach, connect or
any change cancels it: the operation is cancelled by its op id over a fresh connection, the
command waits briefly for the rollback and says what happened: "cancelled: it stopped and
rolled back", "completed before it could be cancelled", or "may still complete: op id …,
`xenvol list` tells". A second Ctrl-C stops waiting.

On a terminal, long operations show the step they are at on stderr; --json is quiet.
"""

import argparse
import getpass
import json
import os
import socket
import ssl
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import XenAPI

from . import check as checks
from . import errors, trust
from .client import Client
from .errors import ConnectionFailed
from .records import Connection
from .session import normalize_url
from .tasks import Progress
from .transport import CertificateMismatch
from .version import __version__

EXIT_PACK = 6
EXIT_CONNECT = 7


class PackFailed(errors.XenvolError):
    exit_code = EXIT_PACK


class CannotConnect(errors.XenvolError):
    exit_code = EXIT_CONNECT


# What a command gives back: (data for --json, text, warnings, minimal values[, partial
# failures]).
Result = Tuple[Any, ...]


# One example per command, shown by its --help.
EXAMPLES = {
    "attach": "xenvol attach vm-3 volume.json --mountpoint xvdc",
    "detach": "xenvol detach vm-3 xvdc   (or: xenvol detach --vdi VDI_UUID)",
    "connect": "xenvol connect xs02 volume.json",
    "disconnect": "xenvol disconnect xs02 volume.json",
    "list": "xenvol list vm-3 --json",
    "drivers": "xenvol drivers xs01",
    "gc": "xenvol gc --pool --apply",
    "version": "xenvol version --minimal",
    "check": "xenvol check --types iscsi --smoke test-vm --report check.json",
    "extend": "xenvol extend volume.json",
    "connector": "xenvol connector vm-3 --json",
    "migrate": "xenvol migrate vm-3 xs03",
    "reconcile": "xenvol reconcile --apply",
    "pack": "xenvol pack verify xenvol-%s.iso --key RPM-GPG-KEY-xenvol" % __version__,
    "pack build": "xenvol pack build --out out --test-key",
    "pack verify": "xenvol pack verify xenvol-%s.iso --key RPM-GPG-KEY-xenvol" % __version__,
    "pack install": "xenvol pack install xs1 xs2 --iso xenvol-%s.iso --key RPM-GPG-KEY-xenvol "
    "--import-key" % __version__,
}


def _output_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--json / --minimal, before the command or after it (as `xe … --minimal`)."""
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", default=default, help="machine-readable output")
    out.add_argument(
        "--minimal",
        action="store_true",
        default=default,
        help="only the uuids (or names), comma-separated, as xe --minimal",
    )


def _command(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str
) -> argparse.ArgumentParser:
    """A command: its one-line help as its description, an example, --json/--minimal."""
    c = sub.add_parser(
        name.split()[-1],
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog="example:\n  " + EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: given after the command, they set the option; else the main parser's stands.
    _output_options(c, argparse.SUPPRESS)
    return c


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xenvol", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version="xenvol %s" % __version__)
    p.add_argument(
        "--url",
        default=os.environ.get("XENVOL_URL"),
        help="pool master, e.g. xs1.example.com or https://xs1:443/ (default $XENVOL_URL)",
    )
    p.add_argument("--username", default=os.environ.get("XENVOL_USERNAME", "root"))
    p.add_argument("--password-file", help="read the password from this file")
    p.add_argument(
        "--no-verify-tls", action="store_true", help="accept any TLS certificate (default: verify)"
    )
    p.add_argument("--cafile", help="CA bundle to verify the pool's certificate with")
    p.add_argument(
        "--trust-fingerprint",
        metavar="SHA256",
        help="trust the master's certificate with this SHA-256 fingerprint "
        "(after comparing it with the host's) and remember it",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per API call")
    _output_options(p, False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    a = _command(sub, "attach", help="attach a volume to a VM")
    a.add_argument("vm", help="VM uuid or name")
    a.add_argument("connection_info", help="file with the connection_info JSON, or - for stdin")
    a.add_argument("--mountpoint", default="autodetect", help="xvdb, /dev/sdc, 3, autodetect")
    mode = a.add_mutually_exclusive_group()
    mode.add_argument("--read-only", dest="read_only", action="store_true", default=None)
    mode.add_argument("--read-write", dest="read_only", action="store_false")
    a.add_argument("--no-hotplug", action="store_true", help="plug at the next VM start")
    a.add_argument(
        "--placement",
        choices=("host", "pool"),
        help="plug the SR on the VM's host and the master, or on every host "
        "(default: the hosts' xenvol.conf)",
    )
    d = _command(sub, "detach", help="detach a volume: VM MOUNTPOINT, or --vdi UUID")
    d.add_argument("vm", nargs="?", help="VM uuid or name")
    d.add_argument("mountpoint", nargs="?")
    d.add_argument("--vdi", help="detach every xenvol disk of this VDI uuid")
    c = _command(sub, "connect", help="connect a volume to a host, no VM")
    c.add_argument("host", help="host uuid or name")
    c.add_argument("connection_info")
    dc = _command(sub, "disconnect", help="undo connect: HOST FILE, or HOST --sr --vdi")
    dc.add_argument("host")
    dc.add_argument("connection_info", nargs="?")
    dc.add_argument("--sr", help="SR uuid (with --vdi) instead of connection_info")
    dc.add_argument("--vdi")
    lst = _command(sub, "list", help="volumes attached by xenvol: all, or one VM's")
    lst.add_argument("vm", nargs="?", help="VM uuid or name")
    lst.add_argument("--vm", dest="vm_option", help=argparse.SUPPRESS)  # the 0.1 spelling
    dr = _command(sub, "drivers", help="volume drivers on every host, or on one")
    dr.add_argument("host", nargs="?", help="host uuid or name")
    dr.add_argument("--host", dest="host_option", help=argparse.SUPPRESS)  # the 0.1 spelling
    g = _command(sub, "gc", help="list (and with --apply remove) what xenvol left unused")
    g.add_argument("--apply", action="store_true", help="remove them (default: list only)")
    g.add_argument(
        "--pool",
        action="store_true",
        help="only the pool-wide objects (SRs, PBDs, leases, secrets, claims), asked of the "
        "master (default: those and every host's dead operations)",
    )
    _command(sub, "version", help="client version and every host's plugin version")
    ck = _command(
        sub,
        "check",
        help="is this pool ready for xenvol: OK, WARN or FAIL with why and what to do "
        "(changes nothing without --smoke)",
    )
    ck.add_argument(
        "--types",
        help="driver types to check storage for, comma-separated (default: every driver, "
        "a missing SM type then only a WARN)",
    )
    ck.add_argument(
        "--smoke",
        metavar="VM",
        help="also attach and detach a scratch file volume to this halted test VM and check "
        "that the pool is left as it was",
    )
    ck.add_argument(
        "--report",
        metavar="FILE",
        help="write the findings, the versions and what the pool answered (secrets "
        "scrubbed) to FILE, to attach to a bug report",
    )
    ex = _command(sub, "extend", help="after the backend grew a volume: rescan, new size")
    ex.add_argument("connection_info", nargs="?", help="file with the connection_info JSON")
    ex.add_argument("--vdi", help="the volume's VDI uuid instead of connection_info")
    cn = _command(
        sub,
        "connector",
        help="initiator IQN, FC WWPNs, NVMe NQN and IPs of the hosts a volume will be plugged on",
    )
    cn.add_argument("vm", nargs="?", help="the VM the volume is for (default: every host)")
    cn.add_argument("--host", help="one host instead")
    cn.add_argument("--placement", choices=("host", "pool"), default="host")
    mg = _command(sub, "migrate", help="live-migrate a VM with xenvol disks to another host")
    mg.add_argument("vm", help="VM uuid or name")
    mg.add_argument("host", help="destination host uuid or name")
    rc = _command(
        sub, "reconcile", help="pool-wide placement: PBDs on every live host (--apply to make them)"
    )
    rc.add_argument("--apply", action="store_true")
    pk = _command(sub, "pack", help="the supplemental pack: build, verify, install over SSH")
    psub = pk.add_subparsers(dest="pack_command", metavar="PACK_COMMAND")
    psub.required = True
    pb = _command(
        psub, "pack build", help="build the RPM and the signed ISO (needs the source tree)"
    )
    pb.add_argument("--out", default="out")
    pb.add_argument("--source", help="the xenvol source tree (default: the one this runs from)")
    pb.add_argument(
        "--test-key",
        action="store_true",
        help="sign with a throwaway TEST key (made once in OUT/test-signing)",
    )
    pv = _command(psub, "pack verify", help="check a pack ISO without a XenServer")
    pv.add_argument("iso")
    keys = pv.add_mutually_exclusive_group()
    keys.add_argument("--key", help="the public key you trust (got from the vendor, not the ISO)")
    keys.add_argument("--keyring", help="a gnupg home holding the keys you trust")
    pi = _command(psub, "pack install", help="install a pack on hosts over SSH")
    pi.add_argument(
        "hosts", nargs="+", metavar="HOST", help="host name, address or ~/.ssh/config alias"
    )
    pi.add_argument("--iso", required=True)
    pi.add_argument("--key", help="the pack's public key file")
    pi.add_argument(
        "--import-key",
        action="store_true",
        help="import the key on each host first (import-update-key)",
    )
    pi.add_argument("--sr", help="SR uuid to upload the update to (pools without a default SR)")
    pi.add_argument("--user", help="SSH user (default: ~/.ssh/config, else root)")
    pi.add_argument("--port", type=int, help="SSH port (default: ~/.ssh/config, else 22)")
    pi.add_argument("--identity", help="SSH private key file (default: ~/.ssh/config, agent)")
    pi.add_argument("--ssh-config", help="OpenSSH client config (default: ~/.ssh/config)")
    pi.add_argument("--known-hosts", help="known_hosts file (default: ~/.ssh/known_hosts)")
    pi.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="trust and record host keys seen for the first time (default: refuse)",
    )
    pi.add_argument("--remote-dir", default="/tmp", help="where to upload on the hosts")
    pi.add_argument("--parallel", type=int, default=8)
    return p


# ---------------------------------------------------------------------- inputs
def _read_file(path: str, what: str, stdin_ok: bool = False) -> str:
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


def _password(args: argparse.Namespace) -> str:
    if os.environ.get("XENVOL_PASSWORD"):
        return os.environ["XENVOL_PASSWORD"]
    if args.password_file:
        return _read_file(args.password_file, "--password-file").rstrip("\n")
    if sys.stdin.isatty():
        return getpass.getpass("Password for %s@%s: " % (args.username, args.url))
    raise errors.InvalidArgument(
        "no password: set XENVOL_PASSWORD, use --password-file, or run in a terminal to be asked",
        details={"field": "password"},
    )


def _read_info(source: str) -> Any:
    text = _read_file(source, "connection_info", stdin_ok=True)
    try:
        return json.loads(text)
    except ValueError as e:
        raise errors.InvalidConnectionInfo(
            "connection_info: %s is not valid JSON (%s)"
            % ("stdin" if source == "-" else source, e),
            details={"field": "connection_info"},
        ) from None


def _show_progress(step: str) -> None:
    sys.stderr.write("\r\033[K%s ..." % step[:70])
    sys.stderr.flush()


def _connect(args: argparse.Namespace, progress: Optional[Progress] = None) -> Client:
    url = normalize_url(args.url)
    pins, pinned = trust.with_fingerprint(url, args.trust_fingerprint, trust.load_known_certs())
    password = _password(args)
    try:
        client = Client(
            url,
            args.username,
            password,
            verify_tls=not args.no_verify_tls,
            cafile=args.cafile,
            timeout=args.timeout,
            pinned_certs=pins,
            progress=progress,
        )
    except ConnectionFailed as e:
        cause = e.__context__
        if isinstance(cause, (ssl.SSLCertVerificationError, CertificateMismatch)):
            hint = trust.untrusted(url, cause, args.timeout)
            raise CannotConnect(hint.message, hint.code, hint.details) from None
        if isinstance(cause, socket.timeout):
            raise CannotConnect(
                "no answer from %s within %g s (--timeout)" % (url, args.timeout), "TIMEOUT"
            ) from None
        raise CannotConnect(e.message, "CANNOT_CONNECT") from None
    except errors.AuthenticationFailed as e:
        raise CannotConnect(e.message, e.code, e.details) from None
    if pinned and client.url and trust.hostport(client.url) == trust.hostport(url):
        trust.remember_cert(trust.hostport(url), pinned)
    return client


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


class _Names:
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


def _skipped(skipped: Sequence[errors.XenvolError], names: _Names) -> List[str]:
    """Warnings for hosts without a usable plugin (printed, and the exit code says so)."""
    return ["host %s (%s): %s" % (names.host(e.host), e.host, e.message) for e in skipped]


# ---------------------------------------------------------------------- commands
def _pack_tools() -> None:
    """The pack tools' libraries come with the `pack` extra, not with the client."""
    import importlib

    for name in ("paramiko", "pycdlib"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise PackFailed(
                "the pack tools need %s, which comes with them: pip install 'xenvol[pack]'" % name,
                "PACK_TOOLS_MISSING",
                {"missing": name},
            ) from None


def _pack(args: argparse.Namespace) -> Result:
    """`xenvol pack …`: xenvol_pack's commands, once their libraries are there."""
    _pack_tools()
    from xenvol_pack import commands
    from xenvol_pack.common import PackError

    try:
        return commands.COMMANDS[args.pack_command](args)
    except PackError as e:
        raise PackFailed(str(e), e.code, e.details) from None


def _run(args: argparse.Namespace) -> Result:
    """(data for --json, text, warnings, minimal values); raises XenvolError."""
    if args.command == "pack":
        return _pack(args)
    if args.command == "version" and not args.url:
        return {"client": __version__}, "xenvol client %s" % __version__, [], [__version__]
    if not args.url:
        raise errors.InvalidArgument(
            "no pool: give --url or set XENVOL_URL", details={"field": "url"}
        )
    if args.command == "check":
        return checks.command(
            args,
            normalize_url(args.url),
            trust.load_known_certs(),
            lambda: _connect(args),
            __version__,
        )
    progress = _show_progress if not args.json and sys.stderr.isatty() else None
    with _connect(args, progress) as client:
        try:
            return _pool_command(args, client, _Names(client))
        finally:
            if progress:
                sys.stderr.write("\r\033[K")


def _pool_command(args: argparse.Namespace, client: Client, names: _Names) -> Result:
    if args.command == "attach":
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
    if args.command == "detach":
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
    if args.command == "connect":
        conn = client.connect(_read_info(args.connection_info), args.host)
        d = dict(conn.to_dict(), host_name=names.host(conn.host_uuid))
        return (
            d,
            "connected VDI %s (SR %s) on host %s (%s)"
            % (d["vdi_uuid"], d["sr_uuid"], d["host_name"], d["host_uuid"]),
            [],
            [d["vdi_uuid"]],
        )
    if args.command == "disconnect":
        if args.connection_info:
            res = client.disconnect(
                connection_info=_read_info(args.connection_info), host=args.host
            )
        elif args.sr and args.vdi:
            host_uuid = client.host_uuid(args.host)
            res = client.disconnect(
                Connection(sr_uuid=args.sr, vdi_uuid=args.vdi, host_uuid=host_uuid)
            )
        else:
            raise errors.InvalidArgument(
                "disconnect: give connection_info or --sr and --vdi",
                details={"field": "connection_info"},
            )
        return res, "disconnected: %s" % res.get("note", ""), [], [res.get("vdi_uuid", "")]
    if args.command == "list":
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
    if args.command == "drivers":
        skipped = []
        result = client.drivers(args.host or args.host_option, skipped=skipped)
        rows = []
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
    if args.command == "gc":
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
    if args.command == "extend":
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
    if args.command == "connector":
        out = client.connector(vm=args.vm, host=args.host, placement=args.placement)
        rows = [
            dict(
                h, wwpns=",".join(h.get("wwpns", [])), nqn=h.get("nqn", ""), ips=",".join(h["ips"])
            )
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
    if args.command == "migrate":
        out = client.migrate(args.vm, args.host)
        text = "migrated VM %s from %s to %s; SRs prepared there: %s%s" % (
            names.vm(out["vm_uuid"]),
            names.host(out["source"]) if out["source"] else "-",
            names.host(out["destination"]),
            ", ".join(out["prepared"]) or "none",
            "".join("\n  source SR %s: %s" % (r["sr_uuid"], r["note"]) for r in out["released"]),
        )
        return out, text, [], [out["vm_uuid"]]
    if args.command == "reconcile":
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
    if args.command == "version":
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
    raise AssertionError(args.command)


def _config_state(info: Dict[str, Any]) -> str:
    """A host's /etc/xenvol/xenvol.conf as its plugin's version() reports it."""
    config = info.get("config")
    if not isinstance(config, dict):
        return "" if info.get("error") else "?"  # a plugin before 0.2.0 does not say
    state = str(config.get("state", "?"))
    return {"absent": "defaults", "invalid": "INVALID"}.get(state, state)


def _fail(args: argparse.Namespace, e: errors.XenvolError) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "error": type(e).__name__,
                    "code": e.code,
                    "message": e.message,
                    "details": e.details,
                    "host": e.host,
                },
                sort_keys=True,
            )
        )
    else:
        # One line, whatever the backend's message holds (grep- and log-friendly).
        sys.stderr.write("xenvol: %s\n" % " ".join(str(e.message).split()))
    return e.exit_code


def _main(args: argparse.Namespace) -> int:
    try:
        result = _run(args)
    except errors.XenvolError as e:
        return _fail(args, e)
    except XenAPI.Failure as f:
        return _fail(args, errors.from_failure(f.details))
    except socket.timeout:
        return _fail(
            args,
            CannotConnect(
                "no answer from the pool within %g s (--timeout)" % args.timeout, "TIMEOUT"
            ),
        )
    except (ConnectionError, ssl.SSLError) as e:
        return _fail(
            args, CannotConnect("lost the connection to the pool: %s" % e, "CANNOT_CONNECT")
        )
    data, text, warnings, minimal = result[:4]
    partial: List[errors.XenvolError] = result[4] if len(result) > 4 else []
    if args.json:
        sys.stdout.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
    elif args.minimal:
        sys.stdout.write(",".join(str(m) for m in minimal) + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
    for w in warnings:
        sys.stderr.write("xenvol: warning: %s\n" % w)
    return max([e.exit_code for e in partial] or [0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.json and args.minimal:
        parser.error("--json and --minimal: give one")
    try:
        return _main(args)
    except KeyboardInterrupt:
        # Outside a change (a lookup, the login): nothing was started.
        sys.stderr.write("\nxenvol: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`xenvol list | head`): no message, and no second error
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # the promise: one line, never a traceback
        if os.environ.get("XENVOL_DEBUG"):
            raise
        sys.stderr.write(
            "xenvol: internal error: %s: %s (XENVOL_DEBUG=1 shows where)\n" % (type(e).__name__, e)
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
