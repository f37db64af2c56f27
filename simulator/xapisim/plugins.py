"""host.call_plugin as xapi runs it: exec the plugin file with the XML-RPC call as argv[1]."""
import os
import signal
import subprocess
import time
import xml.parsers.expat
import xmlrpc.client

from . import wire
from .errors import XapiError

PLUGIN_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"


def encode_call(fn, session, args):
    """The methodCall xapi builds: bare <value> strings, no XML declaration."""
    return wire.plugin_call(fn, session, args)


def run(sim, host, session, plugin, fn, args):
    path = os.path.join(host.plugins_dir, plugin)
    if plugin in ("", ".", "..") or "/" in plugin or not os.path.isfile(path):
        raise XapiError("XENAPI_MISSING_PLUGIN", plugin)
    argv = [path, encode_call(fn, session, args)]
    with sim.controls.lock:
        sim.controls.plugin_argv.append({"host": host.uuid, "plugin": plugin, "fn": fn,
                                         "argv": argv, "time": time.time()})
    env = {"PATH": PLUGIN_PATH, "PYTHONPATH": sim.pylib}
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=sim.plugin_timeout)
    except subprocess.TimeoutExpired as e:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "task stopped", _text(e.stdout), _text(e.stderr))
    except OSError as e:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", str(e))
    out, err = _text(proc.stdout), _text(proc.stderr)
    if proc.returncode < 0:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "signal: %s" % signal.Signals(-proc.returncode).name,
                        out, err)
    if proc.returncode != 0:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", out, err)
    return parse_result(out)


def _text(b):
    return (b or b"").decode("utf-8", "replace")


def parse_result(out):
    try:
        params, _method = xmlrpc.client.loads(out)
    except xmlrpc.client.Fault as f:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "fault", str(f.faultCode), f.faultString)
    except (xml.parsers.expat.ExpatError, ValueError, TypeError) as e:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", out, str(e))
    if len(params) != 1:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", out)
    result = params[0]
    if not isinstance(result, dict) or "Status" not in result:
        raise XapiError("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", out)
    if result["Status"] == "Success":
        value = result.get("Value")
        if not isinstance(value, str):
            raise XapiError("INTERNAL_ERROR",
                            "XMLRPC.RunTimeTypeError(\"string\", %r)" % (value,))
        return value
    desc = result.get("ErrorDescription")
    if not isinstance(desc, list) or not desc or not all(isinstance(d, str) for d in desc):
        raise XapiError("INTERNAL_ERROR", "XMLRPC.RunTimeTypeError(\"string list\", %r)" % (desc,))
    raise XapiError(*desc)
