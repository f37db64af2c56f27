"""`xapisim`: run a simulated pool and drive its test controls.

  xapisim serve [--hosts N] [--vms N] [--listen ADDR:PORT] [--state-dir DIR] [--plugins DIR]
                [--sm-timing real|fast|FACTOR] [--guest-agent-delay SECONDS]
  xapisim fault METHOD CODE [PARAM…] [--nth N | --every] [--caller client|plugin]
  xapisim latency METHOD|'*' SECONDS [--caller client|plugin]
  xapisim counts | snapshot | argv | clear
  xapisim xe …            (the same as the `xe` shim)

Control commands find the pool through --url or $XAPISIM_URL.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import xmlrpc.client

from .server import Servers
from .sim import Simulator


def _addresses(first, n):
    parts = first.split(".")
    return [".".join(parts[:3] + [str(int(parts[3]) + i)]) for i in range(n)]


def start(
    hosts=1,
    vms=2,
    listen="127.0.0.1:0",
    state_dir=None,
    plugins=None,
    password=None,
    tls=None,
    sm_timing="fast",
    guest_agent_delay=0.0,
):
    """Create and serve a pool; returns (simulator, servers, info dict)."""
    address, _, port = listen.rpartition(":")
    state_dir = state_dir or tempfile.mkdtemp(prefix="xapisim-")
    sim = Simulator(
        state_dir,
        hosts=hosts,
        vms=vms,
        password=password,
        addresses=_addresses(address, hosts),
        sm_timing=sm_timing,
    )
    sim.guest_agent_delay = float(guest_agent_delay)
    if plugins:
        sim.install_plugins(plugins)
    servers = Servers(sim, int(port or 0), tls)
    info = {
        "url": servers.master_url,
        "member_urls": servers.urls[1:],
        "user": sim.username,
        "password": sim.password,
        "master": sim.master.uuid,
        "hosts": [h.uuid for h in sim.hosts],
        "state_dir": sim.state_dir,
    }
    return sim, servers, info


def _serve(a):
    tls = (a.tls_cert, a.tls_key) if a.tls_cert else None
    sim, servers, info = start(
        a.hosts,
        a.vms,
        a.listen,
        a.state_dir,
        a.plugins,
        a.password,
        tls,
        a.sm_timing,
        a.guest_agent_delay,
    )
    print(json.dumps(info), flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    servers.stop()
    return 0


def _proxy(a):
    url = a.url or os.environ.get("XAPISIM_URL")
    if not url:
        sys.exit("xapisim: give --url or set XAPISIM_URL")
    return xmlrpc.client.ServerProxy(url, allow_none=False)


def _admin(a, name, *params):
    result = getattr(_proxy(a), "xapisim." + name)(*params)
    if result["Status"] != "Success":
        sys.exit("xapisim: %s" % " ".join(result["ErrorDescription"]))
    return result["Value"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["xe"]:
        from . import xe

        return xe.main(argv[1:])
    p = argparse.ArgumentParser(
        prog="xapisim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="the pool master's URL (default $XAPISIM_URL)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run a simulated pool until stopped")
    s.add_argument("--hosts", type=int, default=1)
    s.add_argument("--vms", type=int, default=2)
    s.add_argument("--listen", default="127.0.0.1:0")
    s.add_argument("--state-dir")
    s.add_argument("--plugins", help="a plugins directory to install on every host")
    s.add_argument("--password", help="the root password (default: random, printed)")
    s.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", help="the certificate's private key (PEM)")
    s.add_argument(
        "--sm-timing",
        default="fast",
        help="the real SM's waits (iSCSI login settle 5 s, scan 2 s, SR scanner 30 s): "
        "real, fast (1/100) or a factor",
    )
    s.add_argument(
        "--guest-agent-delay",
        type=float,
        default=0.0,
        help="seconds from a VM's start to its guest agent's first report (its guest "
        "metrics; seconds to minutes on a host; default 0)",
    )
    f = sub.add_parser("fault", help="make a message fail")
    f.add_argument("method")
    f.add_argument("error", nargs="+", help="error code and parameters")
    f.add_argument("--nth", type=int, default=1)
    f.add_argument("--every", action="store_true")
    f.add_argument("--caller", default="any", choices=("any", "client", "plugin"))
    lat = sub.add_parser("latency", help="delay a message (or '*') by SECONDS")
    lat.add_argument("method")
    lat.add_argument("seconds", type=float)
    lat.add_argument("--caller", default="any", choices=("any", "client", "plugin"))
    for name in ("counts", "snapshot", "argv", "clear"):
        sub.add_parser(name)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        return _serve(a)
    if a.cmd == "fault":
        _admin(
            a,
            "inject_fault",
            a.method,
            a.error,
            {"nth": a.nth, "every": a.every, "caller": a.caller},
        )
    elif a.cmd == "latency":
        _admin(a, "set_latency", a.method, a.seconds, a.caller)
    elif a.cmd == "clear":
        _admin(a, "clear")
    else:
        name = {"argv": "plugin_argv"}.get(a.cmd, a.cmd)
        print(json.dumps(_admin(a, name), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
