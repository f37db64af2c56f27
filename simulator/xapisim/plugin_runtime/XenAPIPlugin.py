"""XenAPIPlugin as dom0 ships it (xen-api python3/examples/XenAPIPlugin.py), for the simulator's
dom0 Python: the same names and the same marshalling, nothing more, so a plugin that works here
meets no surprise on a host. Behaviours that look odd are the real module's and kept on purpose:
- Failure params must be a list: a tuple or a string raises TypeError in Failure() itself, which
  dispatch reports as XENAPI_PLUGIN_FAILURE [fn, "TypeError", ...];
- the response is written without allow_none: a None in Failure params raises in the except
  handler, outside any try, so the plugin dies with a traceback (xapi: "non-zero exit");
- non-string params or results go out as they are; xapi rejects them when it parses the output.
"""

# The real module has it, so the module has its names (tests/test_sim_plugins.py).
from __future__ import print_function  # noqa: UP010

import sys
import xmlrpc.client as xmlrpclib

import XenAPI


class Failure(Exception):
    """A plugin's own error: the caller gets [code] + params as the XAPI error."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + params

    def __str__(self):
        return str(self.params)


def success_message(result):
    return xmlrpclib.dumps(({"Status": "Success", "Value": result},), "", True)


def failure_message(description):
    return xmlrpclib.dumps(({"Status": "Failure", "ErrorDescription": description},), "", True)


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, methodname = xmlrpclib.loads(sys.argv[1])
    session_id, args = params[0], params[1]
    if methodname not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
        return
    # The caller's session on this host's /var/lib/xcp/xapi (xapi_local also sends the
    # originator/traceparent/baggage headers it finds in the environment).
    x = XenAPI.xapi_local()
    x._session = session_id
    try:
        result = fn_table[methodname](x, args)
        print(success_message(result))
    except Failure as e:
        print(failure_message(e.params))
    except Exception as e:
        print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname, e.__class__.__name__, str(e)]))
