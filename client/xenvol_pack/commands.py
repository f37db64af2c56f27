"""`xenvol pack build|verify|install` as the CLI runs them: one function per subcommand in
COMMANDS, each taking the parsed arguments and giving back (data for --json, text, warnings,
minimal values), or raising PackError with its code and details. The CLI (xenvol/cli.py)
prints them; the tools' libraries come with the `pack` extra, which the CLI checks for first."""

import argparse
import os
import sys
from typing import Any, Callable, Dict, Optional, Tuple

from . import build, install, verify
from .common import PackError

# (data for --json, text, warnings, minimal values), as every xenvol command gives back.
Result = Tuple[Any, ...]


def build_pack(args: argparse.Namespace) -> Result:
    r = build.build(args.out, repo=args.source, test_key=args.test_key)
    text = "built %s\n      %s\n      %s\nsigned by %s" % (
        r["iso"],
        r["rpm"],
        r["key"],
        r["signer"],
    )
    return r, text, r["warnings"], [r["iso"]]


def verify_pack(args: argparse.Namespace) -> Result:
    report = verify.verify(args.iso, key=args.key, keyring=args.keyring)
    data: Dict[str, Any] = {
        "ok": report.ok,
        "signer": report.signer,
        "warnings": report.warnings,
        "checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in report.results],
    }
    if not report.ok:
        raise PackError(
            "%s failed %d check(s): %s"
            % (
                args.iso,
                len(report.failures()),
                "; ".join("%s: %s" % f for f in report.failures()),
            ),
            "PACK_INVALID",
            data,
        )
    return data, report.text() + "\npack OK", report.warnings, ["ok"]


def install_pack(args: argparse.Namespace) -> Result:
    progress = install.Progress(args.hosts)
    inst = install.Installer(
        args.iso,
        args.key,
        args.import_key,
        args.user,
        args.port,
        args.identity,
        _ssh_password(),
        args.known_hosts,
        args.accept_new_host_keys,
        remote_dir=args.remote_dir,
        progress=progress,
        sr=args.sr,
        ssh_config=args.ssh_config,
    )
    for w in inst.warnings:  # before the work, so it shows whatever happens next
        sys.stderr.write("xenvol: warning: %s\n" % w)
    results = inst.install(args.hosts, args.parallel)
    data = [r.to_dict() for r in results]
    failed = [r for r in results if not r.ok]
    if failed:
        raise PackError(
            "%d of %d host(s) failed: %s"
            % (
                len(failed),
                len(results),
                "; ".join("%s: %s" % (r.host, r.message) for r in failed),
            ),
            "PACK_INSTALL_FAILED",
            {"hosts": data},
        )
    return (
        data,
        "\n".join("%s: %s" % (r.host, r.message) for r in results),
        [],
        [r.host for r in results],
    )


def _ssh_password() -> Optional[str]:
    """SSH password auth only from the environment; keys are the normal way."""
    return os.environ.get("XENVOL_SSH_PASSWORD") or None


COMMANDS: Dict[str, Callable[[argparse.Namespace], Result]] = {
    "build": build_pack,
    "verify": verify_pack,
    "install": install_pack,
}
