"""A minimal `xe` for the simulator: the list commands and host-call-plugin, printed as xe does.

  xe [-s URL] [-u USER] [-pw PASSWORD] host-list|vm-list|sr-list|vdi-list|vbd-list|pbd-list
     [params=a,b|all] [--minimal] [field=value …]
  xe host-call-plugin host-uuid=UUID plugin=NAME fn=FN [args:KEY=VALUE …] [args:KEY:file=PATH …]
  xe secret-create value=VALUE        xe secret-destroy uuid=UUID
  xe update-upload file-name=ISO [sr-uuid=UUID]   xe update-apply uuid=UUID host=HOST
  xe update-precheck uuid=UUID host=HOST           xe update-param-get uuid=UUID param-name=hosts
  xe update-pool-clean uuid=UUID                   xe update-destroy uuid=UUID

The connection comes from -s/-u/-pw or $XAPISIM_URL, $XAPISIM_USERNAME, $XAPISIM_PASSWORD; in
a simulated dom0 ($XAPISIM_HOST_ROOT set) from the host's local xapi socket, as dom0's xe does.
"""

import http.client
import json
import os
import socket
import sys
import xmlrpc.client
from typing import Any, Dict

import XenAPI

_ERRORS = os.path.join(os.path.dirname(__file__), "data", "errors.json")

# xe name -> (getter on the record and db, qualifier); the default columns per class.
_DEFAULTS = {
    "host": ["uuid", "name-label", "name-description"],
    "VM": ["uuid", "name-label", "power-state"],
    "SR": ["uuid", "name-label", "name-description", "host", "type", "content-type"],
    "VDI": [
        "uuid",
        "name-label",
        "name-description",
        "sr-uuid",
        "virtual-size",
        "sharable",
        "read-only",
    ],
    "VBD": ["uuid", "vm-uuid", "vm-name-label", "vdi-uuid", "empty", "device"],
    "PBD": ["uuid", "host-uuid", "sr-uuid", "device-config", "currently-attached"],
}
_CLASSES = {"host": "host", "vm": "VM", "sr": "SR", "vdi": "VDI", "vbd": "VBD", "pbd": "PBD"}
_RW = {
    "name-label",
    "name-description",
    "other-config",
    "userdevice",
    "bootable",
    "affinity",
    "sm-config",
    "tags",
    "unpluggable",
}


def _fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "; ".join("%s: %s" % kv for kv in sorted(v.items()))
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return str(v)


def _value(x, cls, ref, rec, name):
    def uuid_of(c, r):
        try:
            return getattr(x, c).get_uuid(r)
        except XenAPI.Failure:
            return "<not in database>"

    if name == "sr-uuid":
        return uuid_of("SR", rec["SR"])
    if name == "host-uuid":
        return uuid_of("host", rec["host"])
    if name in ("vm-uuid", "vdi-uuid"):
        c = "VM" if name == "vm-uuid" else "VDI"
        return uuid_of(c, rec[c]) if rec[c] != "OpaqueRef:NULL" else "<not in database>"
    if name == "vm-name-label":
        return x.VM.get_name_label(rec["VM"])
    if name == "host" and cls == "SR":
        pbds = rec["PBDs"]
        hosts = set(x.PBD.get_host(p) for p in pbds)
        if rec["shared"] or len(hosts) != 1:
            return "<shared>" if rec["shared"] else "<not in database>"
        return x.host.get_name_label(hosts.pop())
    field = name.replace("-", "_")
    if field == "power_state":
        return rec[field].lower()
    if field not in rec:
        for k in rec:
            if k.lower() == field:
                return rec[k]
        return None
    return rec[field]


def _list(x, kind, opts):
    cls = _CLASSES[kind]
    records = getattr(x, cls).get_all_records()
    params = opts.pop("params", None)
    minimal = opts.pop("--minimal", False)
    if cls == "VM":
        records = dict((r, v) for r, v in records.items() if not v["is_a_template"])
    rows = []
    for ref, rec in records.items():
        if all(_fmt(_value(x, cls, ref, rec, k)) == v for k, v in opts.items()):
            rows.append((ref, rec))
    if params == "all":
        names = sorted(k.replace("_", "-") for k in rows[0][1]) if rows else []
    else:
        names = params.split(",") if params else _DEFAULTS[cls]
    if minimal:
        col = names[0] if params else "uuid"
        return ",".join(_fmt(_value(x, cls, ref, rec, col)) for ref, rec in rows) + "\n"
    out = []
    for ref, rec in rows:
        labels = ["%s ( %s)" % (n, "RW" if n in _RW else "RO") for n in names]
        width = max(len(lbl) for lbl in labels)
        lines = []
        for i, (n, lbl) in enumerate(zip(names, labels)):
            pad = lbl.ljust(width) if i == 0 else lbl.rjust(width)
            lines.append("%s: %s" % (pad, _fmt(_value(x, cls, ref, rec, n))))
        out.append("\n".join(lines) + "\n\n\n")
    return "".join(out)


def _call_plugin(x, opts, plugin_args):
    host = x.host.get_by_uuid(opts["host-uuid"])
    return x.host.call_plugin(host, opts["plugin"], opts["fn"], plugin_args) + "\n"


def _print_error(f):
    with open(_ERRORS) as fh:
        table = json.load(fh)
    code, params = f.details[0], f.details[1:]
    doc = table.get(code)
    if doc is None:
        sys.stderr.write("Error code: %s\nError parameters: %s\n" % (code, ", ".join(params)))
        return
    lines = [doc["doc"]]
    for i, p in enumerate(params):
        name = doc["params"][i] if i < len(doc["params"]) else "param%d" % i
        lines.append("%s: %s" % (name, p))
    sys.stderr.write("\n".join(lines) + "\n")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        http.client.HTTPConnection.__init__(self, "localhost")
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a host's <root>/var/lib/xcp/xapi (XenAPI.UDSTransport takes the path from
    the URL's host part with "_" for "/", which no simulator state path survives)."""

    def __init__(self, path):
        xmlrpc.client.Transport.__init__(self)
        self._path = path

    def make_connection(self, host):
        return _UnixConnection(self._path)


def _session(url):
    root = os.environ.get("XAPISIM_HOST_ROOT")
    if not url and root:
        sock = os.path.join(root, "var", "lib", "xcp", "xapi")
        return XenAPI.Session("http://localhost/", transport=_UnixTransport(sock))
    return XenAPI.Session(url)


def _host_uuid(session, host):
    """host= takes a uuid or a name label, as xe's host selector does."""
    for rec in session.xenapi.host.get_all_records().values():
        if host in (rec["uuid"], rec["name_label"]):
            return rec["uuid"]
    raise XenAPI.Failure(["UUID_INVALID", "host", host or ""])


def _admin(session, name, *params):
    result = getattr(session, "xapisim." + name)(*params)
    if result["Status"] != "Success":
        raise XenAPI.Failure(result["ErrorDescription"])
    return result["Value"]


# The parameters each command requires (xen-api ocaml/xapi-cli-server/cli_frontend.ml `reqd`);
# a missing one is xapi_cli.ml's param_error, not a failure of the call.
_REQUIRED = {
    "host-call-plugin": ("host-uuid", "plugin", "fn"),
    "secret-create": ("value",),
    "secret-destroy": ("uuid",),
    "update-upload": ("file-name",),
    "update-apply": ("uuid",),
    "update-precheck": ("uuid",),
    "update-param-get": ("uuid", "param-name"),
    "update-pool-clean": ("uuid",),
    "update-destroy": ("uuid",),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    url = os.environ.get("XAPISIM_URL")
    user = os.environ.get("XAPISIM_USERNAME", "root")
    password = os.environ.get("XAPISIM_PASSWORD", "")
    while argv and argv[0] in ("-s", "-u", "-pw"):
        flag, value = argv[0], argv[1]
        argv = argv[2:]
        url, user, password = (
            {"-s": (value, user, password), "-u": (url, value, password), "-pw": (url, user, value)}
        )[flag]
    if not argv or not (url or os.environ.get("XAPISIM_HOST_ROOT")):
        sys.stderr.write(__doc__)
        return 1
    cmd, rest = argv[0], argv[1:]
    opts: Dict[str, Any] = {}
    plugin_args = {}
    for a in rest:
        if a == "--minimal":
            opts[a] = True
        elif a.startswith("args:"):
            key, _, value = a[5:].partition("=")
            if key.endswith(":file"):
                with open(value) as fh:
                    plugin_args[key[:-5]] = fh.read()
            else:
                plugin_args[key] = value
        elif "=" in a:
            k, _, v = a.partition("=")
            opts[k] = v
        else:
            sys.stderr.write("Unknown argument: %s\n" % a)
            return 1
    session = _session(url)
    try:
        session.login_with_password(user, password, "2.21", "xe")
    except XenAPI.Failure as f:
        _print_error(f)
        return 1
    missing = [p for p in _REQUIRED.get(cmd, ()) if p not in opts]
    if missing:
        # cli_frontend.ml get_reqd_param -> ParamNotFound -> xapi_cli.ml param_error
        sys.stderr.write(
            "Required parameter not found: %s\nFor usage run: 'xe help'\n" % missing[0]
        )
        session.xenapi.session.logout()
        return 1
    try:
        if cmd == "host-call-plugin":
            sys.stdout.write(_call_plugin(session.xenapi, opts, plugin_args))
        elif cmd == "secret-create":
            ref = session.xenapi.secret.create({"value": opts["value"], "other_config": {}})
            sys.stdout.write(session.xenapi.secret.get_uuid(ref) + "\n")
        elif cmd == "secret-destroy":
            session.xenapi.secret.destroy(session.xenapi.secret.get_by_uuid(opts["uuid"]))
        elif cmd == "update-upload":
            sys.stdout.write(
                _admin(
                    session,
                    "update_upload",
                    os.path.abspath(opts["file-name"]),
                    *([opts["sr-uuid"]] if opts.get("sr-uuid") else []),
                )
                + "\n"
            )
        elif cmd in ("update-apply", "update-precheck"):
            host = opts.get("host-uuid") or opts.get("host")
            out = _admin(session, cmd.replace("-", "_"), opts["uuid"], _host_uuid(session, host))
            if cmd == "update-precheck":
                sys.stdout.write(out + "\n")
        elif cmd == "update-param-get" and opts.get("param-name") == "hosts":
            sys.stdout.write("; ".join(_admin(session, "update_hosts", opts["uuid"])) + "\n")
        elif cmd in ("update-pool-clean", "update-destroy"):
            _admin(session, cmd.replace("-", "_"), opts["uuid"])
        elif cmd.endswith("-list") and cmd[:-5] in _CLASSES:
            sys.stdout.write(_list(session.xenapi, cmd[:-5], opts))
        else:
            sys.stderr.write("Unknown command: %s\n" % cmd)
            return 1
    except XenAPI.Failure as f:
        _print_error(f)
        return 1
    finally:
        session.xenapi.session.logout()
    return 0


def console():
    sys.exit(main())


if __name__ == "__main__":
    console()
