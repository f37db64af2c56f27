"""The object database: one table per class, records keyed by opaque ref."""
import copy
import threading
import uuid as uuidlib

from . import schema
from .errors import handle_invalid, uuid_invalid

NULL = "OpaqueRef:NULL"

# Set-valued fields that xapi maintains as the reverse of another class's ref field.
REVERSE = {
    ("VM", "VBDs"): ("VBD", "VM"),
    ("VDI", "VBDs"): ("VBD", "VDI"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("SR", "VDIs"): ("VDI", "SR"),
    ("host", "PBDs"): ("PBD", "host"),
    ("host", "resident_VMs"): ("VM", "resident_on"),
}

# Classes whose records come and go with every login or task; left out of state snapshots.
TRANSIENT = ("session", "task", "event")


def new_ref():
    return "OpaqueRef:" + str(uuidlib.uuid4())


class Database(object):
    def __init__(self):
        self.lock = threading.RLock()
        self.tables = dict((cls, {}) for cls in schema.CLASSES)

    def create(self, cls, fields):
        rec = schema.template(cls)
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
            raise handle_invalid(cls, ref)

    def record(self, cls, ref):
        """A copy of the record as the API returns it, reverse sets filled in."""
        rec = copy.deepcopy(self.raw(cls, ref))
        for (owner, field), (other, link) in REVERSE.items():
            if owner == cls:
                rec[field] = [r for r, o in self.tables[other].items() if o[link] == ref]
        return rec

    def field(self, cls, ref, name):
        if (cls, name) in REVERSE:
            other, link = REVERSE[(cls, name)]
            self.raw(cls, ref)
            return [r for r, o in self.tables[other].items() if o[link] == ref]
        return copy.deepcopy(self.raw(cls, ref)[name])

    def destroy(self, cls, ref):
        self.raw(cls, ref)
        del self.tables[cls][ref]

    def by_uuid(self, cls, uuid):
        for ref, rec in self.tables[cls].items():
            if rec["uuid"] == uuid:
                return ref
        raise uuid_invalid(cls, uuid)

    def find(self, cls, **match):
        return [ref for ref, rec in self.tables[cls].items()
                if all(rec.get(k) == v for k, v in match.items())]

    def snapshot(self):
        """Every persistent object, by class and uuid, for before/after comparisons."""
        with self.lock:
            out = {}
            for cls, table in self.tables.items():
                if cls in TRANSIENT:
                    continue
                out[cls] = dict((rec["uuid"], _plain(self.record(cls, ref)))
                                for ref, rec in table.items())
            return out


def _plain(rec):
    return dict((k, str(v) if not isinstance(v, (str, bool, int, float, list, dict)) else v)
                for k, v in rec.items())
