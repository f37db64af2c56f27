"""What the api_* modules need to define messages: the registry their @message decorators
fill, the call Context and the checks xapi's unmarshalling makes. It imports no api_*
module, so messages.py can import them all without a cycle (docs/architecture.md)."""

from typing import Any, Callable, Dict

from . import schema
from .errors import internal

# "Class.message" -> implementation, filled by @message as each api_* module is imported.
IMPL: Dict[str, Callable[..., Any]] = {}


def message(*names):
    """Register an implementation under one or more Class.message names."""

    def deco(fn):
        for name in names:
            IMPL[name] = fn
        return fn

    return deco


class Context:
    def __init__(self, sim, endpoint, session, caller, task=None):
        self.sim = sim
        self.db = sim.db
        self.endpoint = endpoint
        self.session = session
        self.caller = caller
        self.task = task  # the task xapi creates for this call, if any


def check_map_keys(value):
    """xen-api ocaml/database/string_marshall_helper.ml ensure_nonempty: a map with an empty
    key cannot be written; Db_exn.Empty_key_in_map reaches the caller through exnHelper's
    catch-all as INTERNAL_ERROR [Printexc.to_string e]."""
    if "" in value:
        raise internal("Db_exn.Empty_key_in_map")


def require_fields(cls, rec):
    """Constructor structs: a missing required field fails unmarshalling, as in xapi."""
    spec = schema.constructor(cls) or {"required": [], "optional": []}
    for name in spec["required"]:
        if name not in rec:
            raise internal('Server_helpers.Dispatcher_FieldNotFound("%s")' % name)
    known = set(spec["required"]) | set(spec["optional"])
    return dict((k, v) for k, v in rec.items() if k in known)
