"""Message lookup: explicit implementations per class (registered by the api_* modules through
handlers.message), generic ones for implicit messages."""

from . import (  # noqa: F401 (they register)
    api_event,
    api_pool,
    api_secret,
    api_storage,
    api_task,
    api_vm,
    schema,
)
from .errors import XapiError, internal
from .handlers import IMPL, Context, check_map_keys  # noqa: F401 (Context: sim.py)

# Messages that run without the database lock because they wait on something else
# (a plugin process calling back into the simulator).
# SM work runs outside it too (under the SR's SM lock), as xapi's database is not held while
# an SM command runs.
UNLOCKED = {
    "host": ("call_plugin",),
    "VM": ("call_host_plugin", "pool_migrate"),
    "session": ("login_with_password",),
    "PBD": ("plug",),
    "SR": ("scan",),
    "VDI": ("introduce", "create", "destroy"),
    # They block until an event or their timeout (api_event.py).
    "event": ("from", "next"),
}

# Custom messages declared without `Async (xen-api ocaml/idl/datamodel*.ml `call ~flags:[...]`;
# the default is [`Session; `Async]).
NO_ASYNC = {
    "session": (
        "login_with_password",
        "slave_local_login_with_password",
        "logout",
        "local_logout",
        "change_password",
    ),
    "task": ("create", "destroy"),
    "event": ("from", "next", "inject", "get_current_id"),
    "secret": ("introduce",),
}

# Messages whose work xapi hands to xenopsd with a registered, cancellable task
# (xen-api ocaml/xapi/xapi_xenops.ml sync_with_task, xapi_vm_migrate.ml): task.cancel reaches
# them. For every other message Xapi_task.cancel finds nothing to cancel ("falling back to
# polling") and the call runs to its end.
CANCELLABLE = {
    "VBD": ("plug", "unplug", "unplug_force"),
    "VM": ("start", "start_on", "clean_shutdown", "hard_shutdown", "pool_migrate"),
}


def lookup(cls, msg):
    """(implementation, signature, takes_session) or (None, None, None)."""
    if cls not in schema.SCHEMA:
        return None, None, None
    sig = schema.signature(cls, msg)
    if sig is None:
        return None, None, None
    name = "%s.%s" % (cls, msg)
    impl = IMPL.get(name) or _generic(cls, msg)
    if impl is None:
        return None, None, None
    spec = schema.SCHEMA[cls]["messages"].get(msg)
    has_session = spec["session"] if spec else True
    return impl, sig, has_session


def list_methods():
    """system.listMethods (gen_server.ml): the wire name of every message this simulator
    dispatches, class by class; xapi lists its whole API, the simulator what it serves."""
    out = []
    for cls in schema.CLASSES:
        names = schema.message_names(cls)
        if cls != "event":  # datamodel.ml: event has only its own messages
            names += ["get_all", "get_all_records", "get_all_records_where", "get_all_where"]
            names += ["get_record", "get_by_uuid", "get_by_name_label", "create", "destroy"]
            for f in schema.fields(cls):
                names += [p + f[0] for p in ("get_", "set_", "add_to_", "remove_from_")]
        seen = set()
        for msg in names:
            if msg not in seen and lookup(cls, msg)[0] is not None:
                seen.add(msg)
                out.append("%s.%s" % (cls, msg))
    return out


def supports_async(cls, msg):
    """xen-api ocaml/idl/ocaml_backend/gen_client.ml has_async: field getters and setters
    and the generated get_all*/get_record/get_by_* have no async mode, the implicit
    create/destroy have one, custom messages as their flags say. (In these classes every
    custom get_/set_ message is declared [`Session] only.)"""
    if msg.startswith(("get_", "set_", "add_to_", "remove_from_")):
        return False
    return msg not in NO_ASYNC.get(cls, ())


def cancellable(cls, msg):
    return msg in CANCELLABLE.get(cls, ())


def check_type(value, typ, name):
    """xapi's unmarshalling: a wrong XML-RPC type is an INTERNAL_ERROR."""
    ok = True
    if typ == "string" or typ.endswith(" ref") or typ.startswith("enum "):
        ok = isinstance(value, str)
    elif typ == "bool":
        ok = isinstance(value, bool)
    elif typ == "int":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    elif typ == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif typ.endswith(" set"):
        ok = isinstance(value, list)
    elif typ.endswith((" map", " record")):
        ok = isinstance(value, dict)
        if ok and typ == "(string -> string) map":
            ok = all(isinstance(v, str) for v in value.values())
    if not ok:
        raise internal(
            'Rpc.Runtime_error("%s", %r) unmarshalling parameter %s' % (typ, value, name)
        )


def _generic(cls, msg):
    if msg == "get_all":
        return lambda ctx: list(ctx.db.tables[cls])
    if msg == "get_all_records":
        return lambda ctx: ctx.db.records(cls)
    # xen-api ocaml/idl/ocaml_backend/gen_db_actions.ml GetAllRecordsWhere / GetAllWhere
    if msg == "get_all_records_where":
        return lambda ctx, expr: ctx.db.records(cls, ctx.db.where(cls, expr))
    if msg == "get_all_where":
        return lambda ctx, expr: ctx.db.where(cls, expr)
    if msg == "get_record":
        return lambda ctx, ref: ctx.db.record(cls, ref)
    if msg == "get_by_uuid":
        return lambda ctx, uuid: ctx.db.by_uuid(cls, uuid)
    if msg == "get_by_name_label":
        return lambda ctx, label: ctx.db.find(cls, name_label=label)
    if msg.startswith("get_"):
        return lambda ctx, ref: ctx.db.field(cls, ref, msg[4:])
    if msg.startswith("set_"):

        def setter(ctx, ref, value):
            rec = ctx.db.raw(cls, ref)
            if isinstance(value, dict) and schema.field_kind(cls, msg[4:]) == "map":
                check_map_keys(value)
            rec[msg[4:]] = value

        return setter
    if msg.startswith("add_to_"):

        def add(ctx, ref, key, value):
            # xen-api ocaml/database/db_cache_types.ml add_to_map: the empty key first, then
            # the master's non-idempotent add (Db_globs.idempotent_map = false) refuses any
            # existing key; Duplicate_key (tblname, fld, objref, key) carries the ref
            # (db_cache_impl.ml process_structured_field_locked, exnHelper.ml).
            rec = ctx.db.raw(cls, ref)
            field = rec[msg[7:]]
            check_map_keys({key: value})
            if key in field:
                raise XapiError("MAP_DUPLICATE_KEY", cls, msg[7:], ref, key)
            field[key] = value

        return add
    if msg.startswith("remove_from_"):

        def remove(ctx, ref, key):
            ctx.db.raw(cls, ref)[msg[12:]].pop(key, None)

        return remove
    return None
