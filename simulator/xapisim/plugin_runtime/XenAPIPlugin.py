"""XenAPIPlugin for plugins run by xapisim: the public dispatch protocol of xapi's helper.

A plugin is exec'd with the XML-RPC call as argv[1] (method = plugin function, params =
session ref and a string map). dispatch() runs the function with a session bound to the
caller's session ref on this host's xapi socket, and prints the methodResponse on stdout.
The socket is <host root>/var/lib/xcp/xapi, the host root being where the plugin file
lives (<root>/etc/xapi.d/plugins/<name>); on a real host that is / and the standard path.
Kept compatible with dom0's Python 3.6.
"""
import http.client
import os
import socket
import sys
import xmlrpc.client

import XenAPI


class Failure(Exception):
    """Raised by a plugin function: the caller sees the error [code] + params."""

    def __init__(self, code, params):
        Exception.__init__(self)
        if not isinstance(params, list):
            raise Exception("Failure params must be a list of strings")
        for p in params:
            if not isinstance(p, str):
                raise Exception("Failure params must be a list of strings")
        self.params = [code] + params

    def __str__(self):
        return str(self.params)


def success_message(result):
    rpcparams = {"Status": "Success", "Value": result}
    return xmlrpc.client.dumps((rpcparams,), "", True)


def failure_message(description):
    rpcparams = {"Status": "Failure", "ErrorDescription": description}
    return xmlrpc.client.dumps((rpcparams,), "", True)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        http.client.HTTPConnection.__init__(self, "localhost")
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC to a xapi listening on a unix socket (a host's /var/lib/xcp/xapi)."""

    def __init__(self, path):
        xmlrpc.client.Transport.__init__(self)
        self._path = path

    def make_connection(self, host):
        return _UnixConnection(self._path)


def _host_socket():
    plugin = os.path.abspath(sys.argv[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(plugin))))
    return os.path.join(root, "var", "lib", "xcp", "xapi")


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, methodname = xmlrpc.client.loads(sys.argv[1])
    session_id = params[0]
    args = params[1]
    if methodname in fn_table:
        x = XenAPI.Session("http://localhost/", transport=UnixTransport(_host_socket()))
        x._session = session_id
        try:
            result = fn_table[methodname](x, args)
            print(success_message(result))
        except Failure as e:
            print(failure_message(e.params))
        except Exception as e:
            print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname,
                                   e.__class__.__name__, str(e)]))
    else:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
