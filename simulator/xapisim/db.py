"""The object database: one table per class, records keyed by opaque ref."""

import threading
import uuid as uuidlib
from typing import Callable, Dict, List, Set, Tuple

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

# xen-api ocaml/idl/datamodel.ml create_obj ~gen_events:false: no events for these classes
# (event is no table of the database at all).
NO_EVENTS = ("session", "secret", "event")

# xen-api ocaml/database/db_cache_types.ml Table.remove: the deleted-rows queue an event.from
# reads its `del` events from holds 512 entries, then drops all but the newest 256.
DELETED_QUEUE_MAX, DELETED_QUEUE_KEEP = 512, 256


def new_ref():
    return "OpaqueRef:" + str(uuidlib.uuid4())


class _Lock:
    """The database lock (reentrant). Leaving its outermost hold writes down what the holder
    changed (Database.flush), so every change gets its generation and events before another
    thread can see the records."""

    def __init__(self, db):
        self._lock = threading.RLock()
        self._db = db
        self._depth = 0  # only the holder reads or writes it

    def __enter__(self):
        self._lock.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc):
        try:
            if self._depth == 1:
                self._db.flush()
        finally:
            self._depth -= 1
            self._lock.release()


class Database:
    """Records, and the change stamps xapi keeps with them (xen-api ocaml/database/
    db_cache_types.ml): one generation count for the database, bumped by every write; per row
    the generations it was created and last modified at; per table a queue of deleted rows.
    event.from reads these (api_event.py); listeners get each change as it is written
    (eventgen.ml database_callback), event.next's queue among them.

    The simulator's code changes records in place (raw()); what raw() handed out is compared
    with the text of its last write when the lock is left (flush), or on sync()."""

    def __init__(self):
        self.lock = _Lock(self)
        self.tables = dict((cls, {}) for cls in schema.CLASSES)
        # Db_cache_types.Manifest generation_count; 1 so that event.from with the empty
        # token (generation 0) returns every object, as after xapi's database load.
        self.generation = 1
        self.stamps: Dict[str, Dict[str, List[int]]] = dict((c, {}) for c in schema.CLASSES)
        self.deleted: Dict[str, List[Tuple[int, int, str]]] = dict((c, []) for c in schema.CLASSES)
        self.listeners: List[Callable[[str, str, str, Callable[[], dict]], None]] = []
        self._shadow: Dict[str, Dict[str, Tuple[str, dict]]] = dict((c, {}) for c in schema.CLASSES)
        self._touched: Set[Tuple[str, str]] = set()
        self._touched_lock = threading.Lock()

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
        # db_cache_types.ml add_row: the row and the Set(Ref) fields that now list it
        # (update_one_to_many) take this generation; eventgen.ml Create: `add` for the row,
        # `mod` for each object it refers to.
        g = self.generation
        self.stamps[cls][ref] = [g, g]
        self._shadow[cls][ref] = _fingerprint(cls, rec)
        self._notify(cls, ref, "add")
        self._relate(cls, rec, None, g)
        self.generation += 1
        return ref

    def exists(self, cls, ref):
        return ref in self.tables[cls]

    def raw(self, cls, ref):
        """The stored record, for in-place updates; HANDLE_INVALID when absent."""
        try:
            rec = self.tables[cls][ref]
        except KeyError:
            raise handle_invalid(cls, ref) from None
        with self._touched_lock:
            self._touched.add((cls, ref))
        return rec

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
        # eventgen.ml PreDelete: `del` with the last record; db_cache_types.ml remove_row:
        # the rows that listed it are modified at this generation, the row joins the
        # deleted queue.
        self._notify(cls, ref, "del")
        g = self.generation
        rec = self.tables[cls].pop(ref)
        created = self.stamps[cls].pop(ref)[0]
        self._shadow[cls].pop(ref, None)
        queue = self.deleted[cls]
        queue.insert(0, (created, g, ref))
        if len(queue) >= DELETED_QUEUE_MAX:
            del queue[DELETED_QUEUE_KEEP + 1 :]
        self._relate(cls, rec, None, g)
        self.generation += 1

    # ------------------------------------------------------------ change stamps, events
    def flush(self):
        """Write down what changed in the records raw() handed out since the last flush:
        each changed row is one write (db_cache_types.ml set_field: the row modified at the
        generation, then the generation bumped), and a changed reference field modifies
        the rows on both ends (update_one_to_many; eventgen.ml WriteField)."""
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        for cls, ref in sorted(touched):
            rec = self.tables[cls].get(ref)
            if rec is None:
                continue
            now = _fingerprint(cls, rec)
            old = self._shadow[cls].get(ref)
            if old is None or old[0] == now[0]:
                continue
            g = self.generation
            self.stamps[cls][ref][1] = g
            self._shadow[cls][ref] = now
            self._relate(cls, old[1], rec, g)
            self._notify(cls, ref, "mod")
            self._relate(cls, rec, old[1], g)
            self.generation += 1

    def sync(self):
        """flush() over every row: a record changed through a copy raw() handed out earlier
        is written down too. Call with the lock held."""
        with self._touched_lock:
            for cls, table in self.tables.items():
                self._touched.update((cls, ref) for ref in table)
        self.flush()

    def touch(self, cls, ref):
        """db_cache_types.ml touch (event.inject): the row modified at this generation, and
        the generation bumped twice so that a later event.from token compares greater than
        the one inject returns. Returns the row's generation."""
        self.raw(cls, ref)
        self.flush()
        g = self.generation
        self.stamps[cls][ref][1] = g
        self._notify(cls, ref, "mod")  # eventgen.ml RefreshRow
        self.generation += 2
        return g

    def _relate(self, cls, rec, other, g):
        """The rows rec's reference fields point at (and other's do not): modified at g."""
        for (owner, _field), (child, link) in REVERSE.items():
            if child != cls:
                continue
            target = rec.get(link)
            if other is not None and other.get(link) == target:
                continue
            if target in self.tables[owner]:
                self.stamps[owner][target][1] = g
                self._notify(owner, target, "mod")

    def _notify(self, cls, ref, op):
        if cls in NO_EVENTS or not self.listeners:
            return
        for listener in self.listeners:
            listener(cls, ref, op, lambda: self.record(cls, ref))

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


# For each class, its reference fields that some other class lists in a REVERSE set.
LINKS: Dict[str, List[str]] = {}
for (_owner, _set), (_child, _link) in REVERSE.items():
    LINKS.setdefault(_child, []).append(_link)


def _fingerprint(cls, rec):
    """What flush compares a record with: its text (repr, at C speed; a deep copy would cost
    more than the calls it watches), and its reference fields as they were."""
    return repr(rec), dict((k, rec.get(k)) for k in LINKS.get(cls, ()))


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
