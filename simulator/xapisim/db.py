"""The object database: one table per class, records keyed by opaque ref."""

import threading
import uuid as uuidlib
from typing import Dict, List

from . import schema
from .errors import handle_invalid, internal, uuid_invalid

NULL = "OpaqueRef:NULL"

# Set-valued fields that xapi maintains as the reverse of another class's ref field.
REVERSE = {
    ("VM", "VBDs"): ("VBD", "VM"),
    ("VDI", "VBDs"): ("VBD", "VDI"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("SR", "VDIs"): ("VDI", "SR"),
    ("host", "PBDs"): ("PBD", "host"),
    ("host", "resident_VMs"): ("VM", "resident_on"),
    # xen-api ocaml/idl/datamodel.ml relations: (_task, "session") <-> (_session, "tasks")
    ("session", "tasks"): ("task", "session"),
}

# Fields xapi keeps in the database but leaves out of API records (datamodel internal_only).
HIDDEN = {"task": ("session",)}

# Classes whose records come and go with every login or task; left out of state snapshots.
TRANSIENT = ("session", "task", "event")


def new_ref():
    return "OpaqueRef:" + str(uuidlib.uuid4())


class Database:
    def __init__(self):
        self.lock = threading.RLock()
        self.tables = dict((cls, {}) for cls in schema.CLASSES)

    def create(self, cls, fields):
        rec = schema.template(cls)
        for name, value in fields.items():
            if isinstance(value, dict) and "" in value and schema.field_kind(cls, name) == "map":
                # xen-api ocaml/database/string_marshall_helper.ml ensure_nonempty
                raise internal("Db_exn.Empty_key_in_map")
        rec.update(fields)
        if not rec.get("uuid"):
            rec["uuid"] = str(uuidlib.uuid4())
        ref = new_ref()
        self.tables[cls][ref] = rec
        return ref

    def exists(self, cls, ref):
        return ref in self.tables[cls]

    def raw(self, cls, ref):
        """The stored record, for in-place updates; HANDLE_INVALID when absent."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise handle_invalid(cls, ref) from None

    def record(self, cls, ref):
        """A copy of the record as the API returns it, reverse sets filled in."""
        return self._api_record(cls, ref, self.raw(cls, ref), self._reverse_index(cls, ref))

    def records(self, cls, refs=None):
        """{ref: record} for every object of cls (or those refs): one pass over each
        linked table, so the cost is linear in the number of objects."""
        table = self.tables[cls]
        refs = list(table) if refs is None else refs
        index = self._reverse_index(cls)
        return dict((ref, self._api_record(cls, ref, table[ref], index)) for ref in refs)

    def _reverse_index(self, cls, only=None):
        """{field: {ref: [children]}} for the reverse sets of cls."""
        index: Dict[str, Dict[str, List[str]]] = {}
        for (owner, field), (other, link) in REVERSE.items():
            if owner != cls:
                continue
            children = index[field] = {}
            for r, o in self.tables[other].items():
                target = o.get(link)
                if only is None or target == only:
                    children.setdefault(target, []).append(r)
        return index

    @staticmethod
    def _api_record(cls, ref, raw, index):
        hidden = HIDDEN.get(cls, ())
        rec = dict((k, _copy(v)) for k, v in raw.items() if k not in hidden)
        for field, children in index.items():
            rec[field] = list(children.get(ref, ()))
        return rec

    def field(self, cls, ref, name):
        if (cls, name) in REVERSE:
            other, link = REVERSE[(cls, name)]
            self.raw(cls, ref)
            return [r for r, o in self.tables[other].items() if o.get(link) == ref]
        return _copy(self.raw(cls, ref)[name])

    def where(self, cls, expr):
        """Refs of cls matching a xapi filter expression (see dbfilter.py)."""
        from . import dbfilter

        test = dbfilter.compile_expr(expr)
        return [
            ref
            for ref, rec in self.tables[cls].items()
            if test(
                lambda name, rec=rec: (
                    dbfilter.db_string(cls, name, rec[name])
                    if name in rec
                    else dbfilter.missing(name)
                )
            )
        ]

    def destroy(self, cls, ref):
        self.raw(cls, ref)
        del self.tables[cls][ref]

    def by_uuid(self, cls, uuid):
        for ref, rec in self.tables[cls].items():
            if rec["uuid"] == uuid:
                return ref
        raise uuid_invalid(cls, uuid)

    def find(self, cls, **match):
        return [
            ref
            for ref, rec in self.tables[cls].items()
            if all(rec.get(k) == v for k, v in match.items())
        ]

    def snapshot(self):
        """Every persistent object, by class and uuid, for before/after comparisons."""
        with self.lock:
            out = {}
            for cls in self.tables:
                if cls in TRANSIENT:
                    continue
                out[cls] = dict((rec["uuid"], _plain(rec)) for rec in self.records(cls).values())
            return out


def _copy(value):
    """A copy deep enough for records: their containers are dicts and lists of scalars."""
    if isinstance(value, dict):
        return dict((k, _copy(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _plain(rec):
    return dict(
        (k, str(v) if not isinstance(v, (str, bool, int, float, list, dict)) else v)
        for k, v in rec.items()
    )
