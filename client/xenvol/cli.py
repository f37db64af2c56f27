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
from typing import Any, Callable, List, Optional, Sequence

import XenAPI

from . import check as checks
from . import commands, errors, trust
from .client import Client
from .commands import Names, Result, read_file
from .errors import ConnectionFailed
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


# What a command does: the parsed arguments in, what to print out (commands.Result).
Command = Callable[[argparse.Namespace], Result]
PoolCommand = Callable[[argparse.Namespace, Client, Names], Result]


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
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    help: str,
    func: Optional[Command] = None,
) -> argparse.ArgumentParser:
    """A command: its one-line help as its description, an example, --json/--minimal, and
    the function that runs it (a pack subcommand's is its parent's)."""
    c = sub.add_parser(
        name.split()[-1],
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog="example:\n  " + EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: given after the command, they set the option; else the main parser's stands.
    _output_options(c, argparse.SUPPRESS)
    if func is not None:
        c.set_defaults(func=func)
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
    a = _command(sub, "attach", help="attach a volume to a VM", func=_pool(commands.attach))
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
    d = _command(
        sub,
        "detach",
        help="detach a volume: VM MOUNTPOINT, or --vdi UUID",
        func=_pool(commands.detach),
    )
    d.add_argument("vm", nargs="?", help="VM uuid or name")
    d.add_argument("mountpoint", nargs="?")
    d.add_argument("--vdi", help="detach every xenvol disk of this VDI uuid")
    c = _command(
        sub, "connect", help="connect a volume to a host, no VM", func=_pool(commands.connect)
    )
    c.add_argument("host", help="host uuid or name")
    c.add_argument("connection_info")
    dc = _command(
        sub,
        "disconnect",
        help="undo connect: HOST FILE, or HOST --sr --vdi",
        func=_pool(commands.disconnect),
    )
    dc.add_argument("host")
    dc.add_argument("connection_info", nargs="?")
    dc.add_argument("--sr", help="SR uuid (with --vdi) instead of connection_info")
    dc.add_argument("--vdi")
    lst = _command(
        sub, "list", help="volumes attached by xenvol: all, or one VM's", func=_pool(commands.list_)
    )
    lst.add_argument("vm", nargs="?", help="VM uuid or name")
    lst.add_argument("--vm", dest="vm_option", help=argparse.SUPPRESS)  # the 0.1 spelling
    dr = _command(
        sub, "drivers", help="volume drivers on every host, or on one", func=_pool(commands.drivers)
    )
    dr.add_argument("host", nargs="?", help="host uuid or name")
    dr.add_argument("--host", dest="host_option", help=argparse.SUPPRESS)  # the 0.1 spelling
    g = _command(
        sub,
        "gc",
        help="list (and with --apply remove) what xenvol left unused",
        func=_pool(commands.gc),
    )
    g.add_argument("--apply", action="store_true", help="remove them (default: list only)")
    g.add_argument(
        "--pool",
        action="store_true",
        help="only the pool-wide objects (SRs, PBDs, leases, secrets, claims), asked of the "
        "master (default: those and every host's dead operations)",
    )
    _command(sub, "version", help="client version and every host's plugin version", func=_version)
    ck = _command(
        sub,
        "check",
        help="is this pool ready for xenvol: OK, WARN or FAIL with why and what to do "
        "(changes nothing without --smoke)",
        func=_check,
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
    ex = _command(
        sub,
        "extend",
        help="after the backend grew a volume: rescan, new size",
        func=_pool(commands.extend),
    )
    ex.add_argument("connection_info", nargs="?", help="file with the connection_info JSON")
    ex.add_argument("--vdi", help="the volume's VDI uuid instead of connection_info")
    cn = _command(
        sub,
        "connector",
        help="initiator IQN, FC WWPNs, NVMe NQN and IPs of the hosts a volume will be plugged on",
        func=_pool(commands.connector),
    )
    cn.add_argument("vm", nargs="?", help="the VM the volume is for (default: every host)")
    cn.add_argument("--host", help="one host instead")
    cn.add_argument("--placement", choices=("host", "pool"), default="host")
    mg = _command(
        sub,
        "migrate",
        help="live-migrate a VM with xenvol disks to another host",
        func=_pool(commands.migrate),
    )
    mg.add_argument("vm", help="VM uuid or name")
    mg.add_argument("host", help="destination host uuid or name")
    rc = _command(
        sub,
        "reconcile",
        help="pool-wide placement: PBDs on every live host (--apply to make them)",
        func=_pool(commands.reconcile),
    )
    rc.add_argument("--apply", action="store_true")
    pk = _command(
        sub, "pack", help="the supplemental pack: build, verify, install over SSH", func=_pack
    )
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
def _password(args: argparse.Namespace) -> str:
    if os.environ.get("XENVOL_PASSWORD"):
        return os.environ["XENVOL_PASSWORD"]
    if args.password_file:
        return read_file(args.password_file, "--password-file").rstrip("\n")
    if sys.stdin.isatty():
        return getpass.getpass("Password for %s@%s: " % (args.username, args.url))
    raise errors.InvalidArgument(
        "no password: set XENVOL_PASSWORD, use --password-file, or run in a terminal to be asked",
        details={"field": "password"},
    )


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
            hint = trust.untrusted_cli(url, cause, args.timeout)
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


# ---------------------------------------------------------------------- commands
# Each sub-parser names its command's function (set_defaults(func=…)): the pool's in
# commands.py, run logged in by _pool; version, check and pack here.
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
    from xenvol_pack import commands as pack
    from xenvol_pack.common import PackError

    try:
        return pack.COMMANDS[args.pack_command](args)
    except PackError as e:
        raise PackFailed(str(e), e.code, e.details) from None


def _need_url(args: argparse.Namespace) -> str:
    if not args.url:
        raise errors.InvalidArgument(
            "no pool: give --url or set XENVOL_URL", details={"field": "url"}
        )
    return normalize_url(args.url)


def _pool(command: PoolCommand) -> Command:
    """A command that works on the pool: logged in, with the step shown on a terminal."""

    def run(args: argparse.Namespace) -> Result:
        _need_url(args)
        progress = _show_progress if not args.json and sys.stderr.isatty() else None
        with _connect(args, progress) as client:
            try:
                return command(args, client, Names(client))
            finally:
                if progress:
                    sys.stderr.write("\r\033[K")

    return run


def _version(args: argparse.Namespace) -> Result:
    """Without a pool, the client's version alone."""
    if not args.url:
        return {"client": __version__}, "xenvol client %s" % __version__, [], [__version__]
    return _pool(commands.version)(args)


def _check(args: argparse.Namespace) -> Result:
    url = _need_url(args)
    return checks.command(args, url, trust.load_known_certs(), lambda: _connect(args), __version__)


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
        result = args.func(args)
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
