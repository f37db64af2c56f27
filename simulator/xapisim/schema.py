"""The datamodel subset the simulator serves: fields, defaults and message signatures.

data/schema.json is generated from the XAPI datamodel (tools/gen_xapisim_schema.py); this module
turns it into record templates and parameter lists, and derives the implicit messages
(get_<field>, set_<field>, add_to_<map>, remove_from_<map>) that xapi generates for every class.
"""

import copy
import json
import os
import xmlrpc.client

_DATA = os.path.join(os.path.dirname(__file__), "data", "schema.json")

with open(_DATA) as _fh:
    SCHEMA = json.load(_fh)

# Messages the extract does not list but volume work needs, with their real signatures.
_EXTRA = {
    "VM": {
        "start": [["vm", "VM ref", True], ["start_paused", "bool", True], ["force", "bool", True]],
        "start_on": [
            ["vm", "VM ref", True],
            ["host", "host ref", True],
            ["start_paused", "bool", True],
            ["force", "bool", True],
        ],
        "clean_shutdown": [["vm", "VM ref", True]],
        "pool_migrate": [
            ["vm", "VM ref", True],
            ["host", "host ref", True],
            ["options", "(string -> string) map", True],
        ],
        "hard_shutdown": [["vm", "VM ref", True]],
        # datamodel_vm.ml call_host_plugin (xapi 25.22.0)
        "call_host_plugin": [
            ["vm", "VM ref", True],
            ["plugin", "string", True],
            ["fn", "string", True],
            ["args", "(string -> string) map", True],
        ],
    },
    # datamodel_host.ml evacuate: network and evacuate_batch_size are versioned params with
    # defaults (null, 0).
    "host": {
        "evacuate": [
            ["host", "host ref", True],
            ["network", "network ref", False],
            ["evacuate_batch_size", "int", False],
        ]
    },
    "VDI": {
        # datamodel.ml VDI: the implicit constructor and destructor (the class is not in
        # the extract's message list), and the explicit setters of fields SM keeps
        # (hidden from the docs; message_forwarding.ml guards them).
        "create": [["args", "VDI record", True]],
        "destroy": [["self", "VDI ref", True]],
        "set_managed": [["self", "VDI ref", True], ["value", "bool", True]],
        "set_sharable": [["self", "VDI ref", True], ["value", "bool", True]],
        "set_read_only": [["self", "VDI ref", True], ["value", "bool", True]],
        "set_missing": [["self", "VDI ref", True], ["value", "bool", True]],
        "set_virtual_size": [["self", "VDI ref", True], ["value", "int", True]],
        "set_physical_utilisation": [["self", "VDI ref", True], ["value", "int", True]],
        # datamodel.ml VDI: name_label/name_description are StaticRO with explicit setters.
        "set_name_label": [["self", "VDI ref", True], ["value", "string", True]],
        "set_name_description": [["self", "VDI ref", True], ["value", "string", True]],
    },
    "SR": {
        "set_virtual_allocation": [["self", "SR ref", True], ["value", "int", True]],
        "set_physical_size": [["self", "SR ref", True], ["value", "int", True]],
        "set_physical_utilisation": [["self", "SR ref", True], ["value", "int", True]],
    },
    "secret": {
        "introduce": [
            ["uuid", "string", True],
            ["value", "string", True],
            ["other_config", "(string -> string) map", False],
        ]
    },
}

CLASSES = sorted(SCHEMA)


def fields(cls):
    return SCHEMA[cls]["fields"]


def field_kind(cls, name):
    for f in SCHEMA[cls]["fields"]:
        if f[0] == name:
            return f[1]
    return None


def template(cls):
    """A fresh record with every field at its datamodel default (wire form)."""
    rec = {}
    for name, kind, _qual, default in SCHEMA[cls]["fields"]:
        if kind == "datetime":
            rec[name] = xmlrpc.client.DateTime(default)
        else:
            rec[name] = copy.deepcopy(default)
    return rec


def constructor(cls):
    return SCHEMA[cls].get("constructor")


def message_names(cls):
    """The class's own (non-implicit) messages."""
    return list(SCHEMA[cls]["messages"]) + [
        m for m in _EXTRA.get(cls, {}) if m not in SCHEMA[cls]["messages"]
    ]


def signature(cls, msg):
    """Parameter list [(name, type, required)] excluding the session, or None if unknown."""
    extra = _EXTRA.get(cls, {})
    if msg in extra:
        return extra[msg]
    m = SCHEMA[cls]["messages"].get(msg)
    if m is not None:
        return m["params"]
    return _implicit(cls, msg)


def _implicit(cls, msg):
    ref = [["self", "%s ref" % cls, True]]
    # xen-api ocaml/idl/datamodel_utils.ml: only the classes in expose_get_all_messages_for
    # (datamodel.ml; not session, not event) have get_all, get_all_where, get_all_records(_where).
    if msg in ("get_all", "get_all_records", "get_all_records_where", "get_all_where"):
        if cls in ("session", "event"):
            return None
        return [] if msg in ("get_all", "get_all_records") else [["expr", "string", True]]
    if msg == "get_record":
        return ref
    if msg == "get_by_uuid":
        return [["uuid", "string", True]]
    if msg == "get_by_name_label" and field_kind(cls, "name_label"):
        return [["label", "string", True]]
    for prefix in ("get_", "set_", "add_to_", "remove_from_"):
        if not msg.startswith(prefix):
            continue
        name = msg[len(prefix) :]
        spec = [f for f in SCHEMA[cls]["fields"] if f[0] == name]
        if not spec:
            return None
        _n, kind, qual, _d = spec[0]
        if prefix == "get_":
            return ref
        # xapi generates other_config setters for every class, whatever the qualifier says.
        if qual != "RW" and name != "other_config":
            return None
        if prefix == "set_":
            return ref + [["value", kind, True]]
        if kind != "map":
            return None
        if prefix == "add_to_":
            return ref + [["key", "string", True], ["value", "string", True]]
        return ref + [["key", "string", True]]
    return None
