"""`xenvol`: attach and detach volumes from the command line.

Connection: --url/--username, or $XENVOL_URL, $XENVOL_USERNAME, $XENVOL_PASSWORD; without a
password in the environment it is read from --password-file or asked for at a prompt. It is
never taken on the command line. connection_info comes from a file or `-` (stdin).

Exit codes: 0 done, 1 other errors, 2 bad input, 3 not found, 4 storage/backend failure,
5 plugin missing or incompatible, 6 no answer in time (the operation may still complete),
130 cancelled (Ctrl-C: the operation is rolled back).

On a terminal, long operations show the step they are at on stderr; --json is quiet.
"""
import argparse
import getpass
import json
import os
import sys

from . import __version__, errors
from .client import Client, Connection


def _parser():
    p = argparse.ArgumentParser(prog="xenvol", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("XENVOL_URL"),
                   help="pool master URL, e.g. https://xs1.example.com/ (default $XENVOL_URL)")
    p.add_argument("--username", default=os.environ.get("XENVOL_USERNAME", "root"))
    p.add_argument("--password-file", help="read the password from this file")
    p.add_argument("--no-verify-tls", action="store_true",
                   help="accept any TLS certificate (default: verify)")
    p.add_argument("--cafile", help="CA bundle to verify the pool's certificate with")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per API call")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    a = sub.add_parser("attach", help="attach a volume to a VM")
    a.add_argument("vm", help="VM uuid or name")
    a.add_argument("connection_info", help="file with the connection_info JSON, or - for stdin")
    a.add_argument("--mountpoint", default="autodetect", help="xvdb, /dev/sdc, 3, autodetect")
    mode = a.add_mutually_exclusive_group()
    mode.add_argument("--read-only", dest="read_only", action="store_true", default=None)
    mode.add_argument("--read-write", dest="read_only", action="store_false")
    a.add_argument("--no-hotplug", action="store_true", help="plug at the next VM start")
    d = sub.add_parser("detach", help="detach a volume")
    d.add_argument("vm", nargs="?", help="VM uuid or name")
    d.add_argument("mountpoint", nargs="?")
    d.add_argument("--vdi", help="detach every xenvol disk of this VDI uuid")
    c = sub.add_parser("connect", help="connect a volume to a host, no VM")
    c.add_argument("host", help="host uuid or name")
    c.add_argument("connection_info")
    dc = sub.add_parser("disconnect", help="undo connect")
    dc.add_argument("host")
    dc.add_argument("connection_info", nargs="?")
    dc.add_argument("--sr", help="SR uuid (with --vdi) instead of connection_info")
    dc.add_argument("--vdi")
    lst = sub.add_parser("list", help="volumes attached by xenvol")
    lst.add_argument("--vm")
    dr = sub.add_parser("drivers", help="volume drivers on each host")
    dr.add_argument("--host")
    g = sub.add_parser("gc", help="list (and with --apply remove) what xenvol left unused")
    g.add_argument("--apply", action="store_true", help="remove them (default: list only)")
    sub.add_parser("version", help="client version and every host's plugin version")
    pk = sub.add_parser("pack", help="the supplemental pack: build, verify, install over SSH")
    psub = pk.add_subparsers(dest="pack_command", metavar="PACK_COMMAND")
    psub.required = True
    pb = psub.add_parser("build", help="build the RPM and the signed ISO (needs the source tree)")
    pb.add_argument("--out", default="out")
    pv = psub.add_parser("verify", help="check a pack ISO without a XenServer")
    pv.add_argument("iso")
    pv.add_argument("--key", help="the public key to trust (default: the one in the ISO)")
    pi = psub.add_parser("install", help="install a pack on hosts over SSH")
    pi.add_argument("hosts", nargs="+", metavar="HOST")
    pi.add_argument("--iso", required=True)
    pi.add_argument("--key", help="the pack's public key file")
    pi.add_argument("--import-key", action="store_true",
                    help="import the key on each host first (import-update-key)")
    pi.add_argument("--user", default="root")
    pi.add_argument("--port", type=int, default=22)
    pi.add_argument("--identity", help="SSH private key file")
    pi.add_argument("--known-hosts", help="known_hosts file (default: ~/.ssh/known_hosts)")
    pi.add_argument("--accept-new-host-keys", action="store_true",
                    help="trust and record host keys seen for the first time (default: refuse)")
    pi.add_argument("--remote-dir", default="/tmp", help="where to upload on the hosts")
    pi.add_argument("--parallel", type=int, default=8)
    return p


def _password(args):
    if os.environ.get("XENVOL_PASSWORD"):
        return os.environ["XENVOL_PASSWORD"]
    if args.password_file:
        with open(args.password_file) as fh:
            return fh.read().rstrip("\n")
    if sys.stdin.isatty():
        return getpass.getpass("Password for %s@%s: " % (args.username, args.url))
    raise errors.InvalidArgument("no password: set XENVOL_PASSWORD, use --password-file, or run "
                                 "in a terminal to be asked", details={"field": "password"})


def _read_info(source):
    try:
        text = sys.stdin.read() if source == "-" else open(source).read()
    except (IOError, OSError) as e:
        raise errors.InvalidArgument("connection_info: cannot read %s: %s" % (source, e.strerror),
                                     details={"field": "connection_info"})
    try:
        return json.loads(text)
    except ValueError as e:
        raise errors.InvalidConnectionInfo("connection_info: not valid JSON (%s)" % e,
                                           details={"field": "connection_info"})


def _table(rows, columns):
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(w)
                               for c, w in zip(columns, widths)).rstrip())
    return "\n".join(lines)


def _pack(args):
    from .pack import common
    try:
        if args.pack_command == "build":
            from .pack import build
            r = build.build(args.out)
            return r, "built %s\n      %s\n      %s" % (r["iso"], r["rpm"], r["key"])
        if args.pack_command == "verify":
            from .pack import verify
            report = verify.verify(args.iso, args.key)
            data = [{"check": n, "ok": ok, "detail": d} for n, ok, d in report.results]
            if not report.ok:
                raise errors.XenvolError("the pack failed %d check(s):\n%s" % (
                    len(report.failures()), "\n".join("  %s: %s" % f for f in report.failures())),
                    "PACK_INVALID", {"checks": data})
            return data, report.text() + "\npack OK"
        from .pack import install
        progress = install.Progress(args.hosts)
        inst = install.Installer(args.iso, args.key, args.import_key, args.user, args.port,
                                 args.identity, _ssh_password(), args.known_hosts,
                                 args.accept_new_host_keys, remote_dir=args.remote_dir,
                                 progress=progress)
        results = inst.install(args.hosts, args.parallel)
        data = [r.to_dict() for r in results]
        failed = [r for r in results if not r.ok]
        if failed:
            raise errors.BackendError("%d of %d host(s) failed: %s" % (
                len(failed), len(results), "; ".join("%s: %s" % (r.host, r.message)
                                                      for r in failed)),
                "PACK_INSTALL_FAILED", {"hosts": data})
        return data, "\n".join("%s: %s" % (r.host, r.message) for r in results)
    except common.PackError as e:
        raise errors.XenvolError(str(e), "PACK_ERROR")


def _ssh_password():
    """SSH password auth only from the environment; keys are the normal way."""
    return os.environ.get("XENVOL_SSH_PASSWORD") or None


def _run(args):
    if args.command == "pack":
        return _pack(args)
    if args.command == "version" and not args.url:
        return {"client": __version__}, "xenvol client %s" % __version__
    if not args.url:
        raise errors.InvalidArgument("no pool: give --url or set XENVOL_URL",
                                     details={"field": "url"})
    progress = None
    if not args.json and sys.stderr.isatty():
        def progress(step):
            sys.stderr.write("\r\033[K%s ..." % step[:70])
            sys.stderr.flush()
    with Client(args.url, args.username, _password(args), verify_tls=not args.no_verify_tls,
                cafile=args.cafile, timeout=args.timeout, progress=progress) as client:
        try:
            return _command(args, client)
        finally:
            if progress:
                sys.stderr.write("\r\033[K")


def _command(args, client):
    if args.command == "attach":
        att = client.attach(_read_info(args.connection_info), args.vm, args.mountpoint,
                            args.read_only, not args.no_hotplug)
        d = att.to_dict()
        return d, "attached %s to VM %s as %s (userdevice %s, %s, %s)%s" % (
            d["vdi_uuid"], d["vm_uuid"], d["device"], d["userdevice"], d["mode"],
            "plugged" if d["plugged"] else "plugged at next start",
            " [%s]" % d["note"] if d.get("note") else "")
    if args.command == "detach":
        if args.vdi:
            done = client.detach(vdi=args.vdi)
        elif args.vm and args.mountpoint:
            done = client.detach(vm=args.vm, mountpoint=args.mountpoint)
        else:
            raise errors.InvalidArgument("detach: give VM and MOUNTPOINT, or --vdi",
                                         details={"field": "mountpoint"})
        rows = [a.to_dict() for a in done]
        return rows, ("detached:\n" + _table(rows, ("vm_uuid", "device", "vdi_uuid"))
                      if rows else "nothing to detach: not attached")
    if args.command == "connect":
        conn = client.connect(_read_info(args.connection_info), args.host)
        d = conn.to_dict()
        return d, "connected VDI %s (SR %s) on host %s" % (d["vdi_uuid"], d["sr_uuid"],
                                                         d["host_uuid"])
    if args.command == "disconnect":
        if args.connection_info:
            res = client.disconnect(connection_info=_read_info(args.connection_info),
                                    host=args.host)
        elif args.sr and args.vdi:
            host_uuid = client.x.host.get_uuid(client._host(args.host))
            res = client.disconnect(Connection(sr_uuid=args.sr, vdi_uuid=args.vdi,
                                               host_uuid=host_uuid))
        else:
            raise errors.InvalidArgument("disconnect: give connection_info or --sr and --vdi",
                                         details={"field": "connection_info"})
        return res, "disconnected: %s" % res.get("note", "")
    if args.command == "list":
        rows = [a.to_dict() for a in client.attachments(args.vm)]
        return rows, _table(rows, ("vm_uuid", "device", "mode", "plugged",
                                   "driver_volume_type", "vdi_uuid", "host_uuid"))
    if args.command == "drivers":
        result = client.drivers(args.host)
        rows = []
        for host, info in sorted(result.items()):
            rows += [dict(d, host=host) for d in info["drivers"]]
            rows += [{"host": host, "driver_volume_type": "(failed)",
                      "origin": "%s: %s" % (f["file"], f["error"])} for f in info["failed"]]
        return result, _table(rows, ("host", "driver_volume_type", "sr_type", "origin"))
    if args.command == "gc":
        items = client.gc(dry_run=not args.apply)
        verb = "removed" if args.apply else "would remove (run with --apply)"
        text = "%s:\n%s" % (verb, _table(items, ("kind", "id", "why", "action")))
        failed = [i for i in items if i.get("done") is False]
        if failed:
            text += "\nfailed: " + "; ".join("%s %s: %s" % (i["kind"], i["id"], i["error"])
                                            for i in failed)
        return items, text if items else "nothing to collect"
    if args.command == "version":
        result = client.versions()
        rows = [dict(v, host=h) for h, v in sorted(result.items())]
        text = "xenvol client %s\n" % __version__ + _table(
            rows, ("host", "version", "api_level", "error"))
        return {"client": __version__, "hosts": result}, text
    raise AssertionError(args.command)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        data, text = _run(args)
    except errors.XenvolError as e:
        if args.json:
            print(json.dumps({"error": type(e).__name__, "code": e.code, "message": e.message,
                              "details": e.details, "host": e.host}, sort_keys=True))
        else:
            sys.stderr.write("xenvol: %s\n" % e.message)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    print(json.dumps(data, indent=1, sort_keys=True) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
