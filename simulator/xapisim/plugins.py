"""host.call_plugin as xapi runs it: exec the plugin file with the XML-RPC call as argv[1]."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.parsers.expat
import xmlrpc.client
from typing import Dict, List, Optional

from . import wire
from .errors import XapiError

# xen-api ocaml/forkexecd/lib/forkhelpers.ml default_path
PLUGIN_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"
PLUGINS_ROOT = "/etc/xapi.d/plugins"
NO_NAMESPACE = (
    "xapisim: no private mount namespace here (needs root or unprivileged user "
    "namespaces), so a plugin cannot see its host's /etc and /var"
)

# The plugin runs in a private mount namespace that is its host's dom0 as far as it can tell:
# the host root's /etc and /var on /etc and /var (the xapi socket at /var/lib/xcp/xapi, logs,
# locks, /etc/xapi.d/plugins, /etc/xenvol), and dom0's Python on /usr/bin/python3, the
# interpreter plugins name. Then the plugin is exec'd as xapi execs it: vfork_helper.c exits
# 127 (ENOENT) or 126 (EACCES: a directory, no x bit) when execv fails, with nothing on the
# plugin's stderr; the shell would print its own message, so those cases are decided first.
# dom0's Python is a shell wrapper too; it drops the PWD a shell exports (xapi passes none).
_SETUP = """set -e
mount --bind "$1" /usr/bin/python3
mount --rbind "$2/var" /var
mount --rbind "$2/etc" /etc
# The host's sysfs: what its kernel shows of the simulated FC fabric (sm/hba.py writes it).
mount --rbind "$2/sys" /sys
[ ! -f "$2/boot_id" ] || mount --bind "$2/boot_id" /proc/sys/kernel/random/boot_id
set +e
shift 2
[ -e "$1" ] || exit 127
[ -f "$1" ] && [ -x "$1" ] || exit 126
exec "$@"
"""


def encode_call(fn, session, args):
    """The methodCall xapi builds: bare <value> strings, no XML declaration."""
    return wire.plugin_call(fn, session, args)


def run(sim, host, session, plugin, fn, args):
    # xen-api ocaml/xapi/xapi_plugins.ml find_plugin: the name must be an entry of
    # readdir(plugins root), exactly (no "." or "..", no path, no ".py" added); a directory is
    # an entry too, and fails later at exec.
    try:
        names = os.listdir(host.plugins_dir)
    except OSError:
        names = []
    if plugin not in names:
        raise XapiError("XENAPI_MISSING_PLUGIN", plugin)
    # call_plugin execs <Xapi_globs.xapi_plugins_root>/<name> with the call as its one argument.
    argv = [PLUGINS_ROOT + "/" + plugin, encode_call(fn, session, args)]
    with sim.controls.lock:
        sim.controls.plugin_argv.append(
            {"host": host.uuid, "plugin": plugin, "fn": fn, "argv": argv, "time": time.time()}
        )
    if sim.dom0 is None:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", NO_NAMESPACE)
    # Forkhelpers.execute_command_get_output: no timeout, and the environment is
    # default_path_env_pair (PATH only) plus TRACEPARENT/BAGGAGE when tracing is on (it is off
    # by default, and the simulator does not trace).
    try:
        proc = subprocess.Popen(
            sim.dom0.command(host) + argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": PLUGIN_PATH},
            cwd="/",
        )
    except OSError as e:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", str(e)) from None
    with _RUNNING_LOCK:
        _RUNNING[proc.pid] = host.uuid
    try:
        stdout, stderr = proc.communicate()
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)
    out, err = _text(stdout), _text(stderr)
    if proc.returncode < 0:
        raise XapiError(
            "XENAPI_PLUGIN_FAILURE", "signal: %s" % signal.Signals(-proc.returncode).name, out, err
        )
    if proc.returncode != 0:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", out, err)
    return parse_result(out)


# Plugin processes running, pid -> host uuid (for a simulated host reboot).
_RUNNING: Dict[int, str] = {}
_RUNNING_LOCK = threading.Lock()


def kill_host(host):
    """SIGKILL every plugin process of a host."""
    with _RUNNING_LOCK:
        pids = [pid for pid, h in _RUNNING.items() if h == host.uuid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _text(b):
    return (b or b"").decode("utf-8", "replace")


def parse_result(out):
    try:
        params, _method = xmlrpc.client.loads(out)
    except xmlrpc.client.Fault as f:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "fault", str(f.faultCode), f.faultString) from None
    except (xml.parsers.expat.ExpatError, ValueError, TypeError) as e:
        raise XapiError(
            "XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", out, str(e)
        ) from None
    if len(params) != 1:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", out)
    result = params[0]
    if not isinstance(result, dict) or "Status" not in result:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", out)
    if result["Status"] == "Success":
        value = result.get("Value")
        if not isinstance(value, str):
            raise XapiError("INTERNAL_ERROR", 'XMLRPC.RunTimeTypeError("string", %r)' % (value,))
        return value
    desc = result.get("ErrorDescription")
    if not isinstance(desc, list) or not desc or not all(isinstance(d, str) for d in desc):
        raise XapiError("INTERNAL_ERROR", 'XMLRPC.RunTimeTypeError("string list", %r)' % (desc,))
    raise XapiError(*desc)


# ---------------------------------------------------------------------- dom0's Python
class Dom0:
    """How plugins are exec'd: dom0's Python (an interpreter whose site-packages has XenAPI and
    XenAPIPlugin, as dom0's /usr/bin/python3 does) behind /usr/bin/python3 in the plugin's
    mount namespace."""

    def __init__(self, state_dir, python, unshare):
        self.python = python
        self.unshare = unshare
        self.wrapper = os.path.join(state_dir, "dom0-python3")
        script = "#!/bin/sh\n"
        measure = os.environ.get("XAPISIM_DOM0_COVERAGE")
        if measure:
            script += _coverage_hook(state_dir, python, measure)
        script += 'exec env -u PWD %s "$@"\n' % _quote(python)
        with open(self.wrapper, "w") as fh:
            fh.write(script)
        os.chmod(self.wrapper, 0o755)

    def command(self, host):
        os.makedirs(host.path("sys"), exist_ok=True)
        return self.unshare + ["sh", "-c", _SETUP, "dom0", self.wrapper, host.root]


def _quote(s):
    return "'%s'" % s.replace("'", "'\\''")


# A test-only measurement hook, off unless $XAPISIM_DOM0_COVERAGE names a data file (`make test`
# sets it): the xenvol plugin then runs under the C line tracer of the coverage that dom0's
# Python has (coverage.tracer.CTracer, as coverage's collector drives it, without importing
# the coverage package: its import and its SQLite save would double the cost of every plugin
# run). Each run leaves `<data file>.dom0.<pid>.<random>.json`, {path: [line, ...]} of the
# plugin's files; tools/dom0_coverage.py turns them into coverage data for `coverage combine`.
# The plugin runs as it would without: same argv, sys.path[0] its directory, and xapi's
# environment (PATH only). Other plugins run as ever.
_COVERAGE_RUNNER = """import importlib.util, json, os, runpy, sys, threading
DATA = %r
MEASURED = ("/etc/xapi.d/plugins/xenvol", "/etc/xapi.d/plugins/xenvol_dom0/")
spec = importlib.util.find_spec("coverage")
so = [f for f in os.listdir(spec.submodule_search_locations[0]) if f.startswith("tracer.")]
spec = importlib.util.spec_from_file_location("coverage.tracer", os.path.join(
    spec.submodule_search_locations[0], so[0]))
ctracer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ctracer)
lines, cache, tracers = {}, {}, []


def should_trace(filename, frame):
    d = ctracer.CFileDisposition()
    d.original_filename = d.canonical_filename = d.source_filename = filename
    d.trace = filename == MEASURED[0] or filename.startswith(MEASURED[1])
    d.reason, d.file_tracer, d.has_dynamic_filename = "", None, False
    return d


def start():
    t = ctracer.CTracer()
    t.data, t.trace_arcs, t.should_trace, t.should_trace_cache = lines, False, should_trace, cache
    t.warn = lambda *a, **k: None
    t.concur_id_func = t.should_start_context = t.switch_context = t.disable_plugin = None
    t.check_include, t.file_tracers = None, {}
    tracers.append(t)
    return t.start()


def on_thread(frame, event, arg):
    sys.settrace(None)
    fn = start()
    return fn(frame, event, arg) if fn else None


sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])
threading.settrace(on_thread)
start()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    for t in tracers:
        t.stop()
    out = "%%s.dom0.%%d.%%s.json" %% (DATA, os.getpid(), os.urandom(4).hex())
    with open(out + ".part", "w") as fh:  # whole or not at all (a kill -9 may come now)
        json.dump(dict((f, sorted(n)) for f, n in lines.items()), fh)
    os.rename(out + ".part", out)
"""


def _coverage_hook(state_dir, python, data_file):
    runner = os.path.join(state_dir, "dom0-coverage.py")
    with open(runner, "w") as fh:
        fh.write(_COVERAGE_RUNNER % os.path.abspath(data_file))
    return '[ "$1" != %s/xenvol ] || exec env -u PWD %s %s "$@"\n' % (
        PLUGINS_ROOT,
        _quote(python),
        _quote(runner),
    )


def dom0(state_dir, python=None):
    """The plugin runtime for a simulator, or None where no mount namespace can be made.
    python: dom0's interpreter (default $XAPISIM_DOM0_PYTHON, else one built from the
    simulator's own Python with the XenAPI it uses)."""
    unshare = _unshare()
    if unshare is None:
        return None
    python = python or os.environ.get("XAPISIM_DOM0_PYTHON") or _default_python()
    return Dom0(state_dir, os.path.abspath(python), unshare)


# The unshare command that works here, found once (None: none does).
_UNSHARE: List[Optional[List[str]]] = []


def _unshare():
    """unshare -m as root; as another user inside a user namespace where it maps us to root."""
    if not _UNSHARE:
        found = None
        tries = ([] if os.geteuid() else [["unshare", "-m", "--propagation", "private"]]) + [
            ["unshare", "-U", "-r", "-m", "--propagation", "private"]
        ]
        for cmd in tries:
            try:
                ok = (
                    subprocess.run(
                        cmd + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    ).returncode
                    == 0
                )
            except OSError:
                ok = False
            if ok:
                found = cmd
                break
        _UNSHARE.append(found)
    return _UNSHARE[0]


def _default_python():
    """A venv of the simulator's base interpreter with XenAPI and XenAPIPlugin, built once per
    machine. Its python is a copy: the base binary itself is covered by the wrapper in the
    plugin's namespace."""
    import XenAPI

    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    xenapi = os.path.dirname(os.path.abspath(XenAPI.__file__))
    runtime = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin_runtime")
    key = hashlib.sha1("\0".join((base, xenapi, runtime)).encode()).hexdigest()[:12]
    env = os.path.join(tempfile.gettempdir(), "xapisim-dom0-python-%d-%s" % (os.getuid(), key))
    python = os.path.join(env, "bin", "python3")
    if not os.path.exists(python):
        build = tempfile.mkdtemp(prefix=os.path.basename(env) + ".", dir=os.path.dirname(env))
        subprocess.run(
            [base, "-m", "venv", "--without-pip", "--copies", build],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        site_packages(build, xenapi_dir=xenapi)
        try:
            os.rename(build, env)
        except OSError:  # another simulator built it first
            shutil.rmtree(build, ignore_errors=True)
    return python


def site_packages(venv, xenapi_dir=None):
    """Give a venv XenAPIPlugin (a .pth naming plugin_runtime) and, if asked, a link to XenAPI."""
    import glob

    sp = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))[0]
    runtime = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin_runtime")
    with open(os.path.join(sp, "xapisim-dom0.pth"), "w") as fh:
        fh.write(runtime + "\n")
    if xenapi_dir:
        os.symlink(xenapi_dir, os.path.join(sp, "XenAPI"))
