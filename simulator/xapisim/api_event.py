"""The event class: event.from with its tokens, event.inject, and the older event.register /
unregister / next with their queue, as xen-api ocaml/xapi/xapi_event.ml has them.

The database (db.py) stamps every write with a generation and tells its listeners of each
change; event.from reads the stamps, event.next a queue of the changes. The blocking calls
(`event.from`, `event.next`, UNLOCKED in messages.py) wait on a condition of their own, never
holding the database lock, and wake on a change that concerns them, on their session's logout
or on the simulator's stop.
"""

import hashlib
import threading
import time
from typing import Dict, List

from . import schema, wire
from .db import NO_EVENTS
from .errors import XapiError
from .handlers import message

# xen-api ocaml/xapi/xapi_globs.ml event_from_delay / event_from_task_delay / event_next_delay
# (Throttle.Batching): the wait before the first look and between two looks, in seconds
# (the backoff between looks starts lower in xapi; never faster here).
FROM_DELAY = (0.05, 0.05)
FROM_TASK_DELAY = (0.0, 0.05)
NEXT_DELAY = (0.2, 0.05)
# xapi_event.ml from: a timeout Clock.Timer.s_to_span cannot turn into a span (negative, NaN,
# too large) waits a day.
DEFAULT_TIMEOUT = 24 * 3600.0
# xapi_event.ml Next.max_queue_size: the total size (JSON bytes) of event.next's queue.
MAX_QUEUE_SIZE = 10000000
# How often a waiting call looks at the database anyway (db.sync), for changes made through a
# record handed out before (db.py): a look finds nothing new more often than xapi, no more.
RESYNC = 1.0

# The classes with events, as event.from walks them (datamodel order stands in: any order).
EVENT_CLASSES = [c for c in schema.CLASSES if c not in NO_EVENTS]


def parse_subscription(text):
    """xapi_event.ml Subscription.of_string: "*", "class" or "class/ref" (class lower-cased)."""
    if text == "*":
        return ("all", None, None)
    cls, _, ref = text.partition("/")
    if "/" in text:
        return ("object", cls.lower(), ref)
    return ("class", cls.lower(), None)


def table_matches(subs, table):
    table = table.lower()
    return any(kind == "all" or cls == table for kind, cls, _r in subs)


def object_matches(subs, table, ref):
    table = table.lower()
    return any(
        kind == "all" or (cls == table and (kind == "class" or r == ref)) for kind, cls, r in subs
    )


def parse_token(token):
    """xapi_event.ml Token.of_string: "" or two Int64s, "from,from_t"."""
    parts = token.split(",")
    if parts == [""]:
        return 0, 0
    if len(parts) != 2:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    try:
        return wire.ocaml_int64(parts[0]), wire.ocaml_int64(parts[1])
    except wire.RequestError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None


def token_string(last, last_t):
    # Token.to_string: zero-padded so that tokens compare as strings.
    return "%020d,%020d" % (last, last_t)


def ocaml_string_of_float(x):
    """OCaml string_of_float (the timestamp of an event.next event): "%.12g", with a "." added
    when that reads as an integer."""
    s = "%.12g" % x
    return s if any(c in s for c in ".eEn") else s + "."


def trackid(session):
    # context.ml trackid_of_session: the MD5 of the session ref, never the ref itself.
    return "trackid=" + hashlib.md5(session.encode()).hexdigest()


class _Call:
    """One blocking event.from (xapi_event.ml From.call)."""

    def __init__(self, subs):
        self.subs = subs
        self.bumps = 0  # matching changes seen since the call began
        self.invalid = False


class _Subscription:
    """A session's event.register subscription (xapi_event.ml Next.subscription)."""

    def __init__(self, last_id):
        self.last_id = last_id
        self.subs: List[tuple] = []
        self.invalid = False


class Events:
    """The event state of one simulator: event.from's blocking calls, event.next's queue."""

    def __init__(self, sim):
        self.sim = sim
        self.cond = threading.Condition()
        self.calls: Dict[str, List[_Call]] = {}
        self.subscriptions: Dict[str, _Subscription] = {}
        self.queue: List[tuple] = []  # (size, event), oldest first
        self.queue_size = 0
        self.next_id = 0
        self.highest_forgotten = -1
        self.max_queue_size = MAX_QUEUE_SIZE
        sim.db.listeners.append(self._on_change)

    # ------------------------------------------------------------ the database's side
    def _on_change(self, cls, ref, op, snapshot):
        """xapi_event.ml event_add: From.add wakes the event.from calls the change concerns;
        Next.add queues it, with its snapshot, if a registered session wants it."""
        with self.cond:
            woken = False
            for calls in self.calls.values():
                for call in calls:
                    if object_matches(call.subs, cls, ref):
                        call.bumps += 1
                        woken = True
            if any(object_matches(s.subs, cls, ref) for s in self.subscriptions.values()):
                ev = {
                    "id": str(self.next_id),
                    "timestamp": ocaml_string_of_float(time.time()),
                    "class": cls.lower(),
                    "operation": op,
                    "ref": ref,
                    "snapshot": _typed_record(cls, snapshot()),
                }
                self._queue(ev)
                self.next_id += 1
                woken = True
            if woken:
                self.cond.notify_all()

    def _queue(self, ev):
        # Next.add: past max_queue_size the oldest events go, and event.next calls whose
        # range reaches back to them fail EVENTS_LOST.
        size = len(wire.to_json(ev))
        self.queue.append((size, ev))
        self.queue_size += size
        while self.queue and self.queue_size > self.max_queue_size:
            dropped, old = self.queue.pop(0)
            self.queue_size -= dropped
            self.highest_forgotten = int(old["id"])

    def session_deleted(self, session):
        """xapi_event.ml on_session_deleted: the session's waiting calls fail SESSION_INVALID."""
        with self.cond:
            for call in self.calls.pop(session, ()):
                call.invalid = True
            sub = self.subscriptions.pop(session, None)
            if sub is not None:
                sub.invalid = True
            self.cond.notify_all()

    def stop(self):
        """The simulator stops (sim.stopping is set): waiting calls end now."""
        with self.cond:
            self.cond.notify_all()

    def _wait(self, ready, deadline=None):
        """Wait on the condition until ready(), the deadline, the simulator's stop or RESYNC."""
        end = time.monotonic() + RESYNC
        if deadline is not None:
            end = min(end, deadline)
        with self.cond:
            while not ready() and not self.sim.stopping.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)

    # ------------------------------------------------------------ event.from
    def event_from(self, session, classes, token, timeout):
        """xapi_event.ml from: the changes after `token` to the objects `classes` select,
        waiting up to `timeout` seconds for one; an empty batch only once the time is up."""
        # Mtime.Span.of_float_ns: no span for a negative or NaN count, nor past 2^64 ns.
        valid = timeout == timeout and 0 <= timeout * 1e9 < 2.0**64
        deadline = time.monotonic() + (timeout if valid else DEFAULT_TIMEOUT)
        subs = [parse_subscription(c) for c in classes]
        since, since_t = parse_token(token)
        task_only = all(kind != "all" and cls == "task" for kind, cls, _r in subs)
        delay_before, delay_between = FROM_TASK_DELAY if task_only else FROM_DELAY
        call = _Call(subs)
        with self.cond:
            self.calls.setdefault(session, []).append(call)
        try:
            while True:
                # from: an empty batch (an object gone before its snapshot) is not answered
                # while time is left; look again from the caller's token.
                time.sleep(delay_before)
                batch = self._from_inner(
                    session, call, subs, since, since_t, deadline, delay_between
                )
                if batch["events"] or self._over(deadline):
                    return batch
        finally:
            with self.cond:
                calls = self.calls.get(session, [])
                if call in calls:
                    calls.remove(call)
                if not calls:
                    self.calls.pop(session, None)

    def _from_inner(self, session, call, subs, since, since_t, deadline, delay_between):
        db = self.sim.db
        msg_gen = since_t if table_matches(subs, "message") else 0
        while True:
            with self.cond:
                bumps = call.bumps
            with db.lock:
                db.sync()
                creates, mods, deletes, last = self._collect(subs, since)
            if creates or mods or deletes or self._over(deadline):
                break
            # Nothing new: wait for a change that concerns the call, then look again from
            # the last generation that matched (from_inner's `sub.cur_id <- last`).
            self._wait(lambda b=bumps: call.bumps != b or call.invalid, deadline)
            if call.invalid:
                raise XapiError("SESSION_INVALID", session)
            since = last
            time.sleep(delay_between)
        events = []
        with db.lock:
            # events_of: a snapshot at read time; an object gone since is left out (CA-91931).
            for op, entries in (("add", creates), ("mod", mods)):
                for cls, ref, stamp in entries:
                    if ref in db.tables[cls]:
                        events.append(_event(cls, ref, stamp, op, db.record(cls, ref)))
            events += [_event(cls, ref, stamp, "del") for cls, ref, stamp in deletes]
            counts = dict(
                (cls.lower(), wire.Int32(len(table)))
                for cls, table in db.tables.items()
                if cls != "event"
            )
        return {"events": events, "valid_ref_counts": counts, "token": token_string(last, msg_gen)}

    def _over(self, deadline):
        return time.monotonic() >= deadline or self.sim.stopping.is_set()

    @staticmethod
    def _sorted(entries):
        return sorted(entries, key=lambda e: e[2])

    def _collect(self, subs, since):
        """xapi_event.ml collect_events over the stamps: rows created after `since` are
        `add`, rows modified after it `mod`, rows deleted after it that existed at it `del`;
        `last` is the newest generation among the matching rows."""
        db = self.sim.db
        creates: List[tuple] = []
        mods: List[tuple] = []
        deletes: List[tuple] = []
        last = since
        for cls in EVENT_CLASSES:
            if not table_matches(subs, cls):
                continue
            for ref, (created, modified) in list(db.stamps[cls].items()):
                if modified > since and object_matches(subs, cls, ref):
                    last = max(last, modified)
                    (creates if created > since else mods).append((cls, ref, modified))
            for created, deleted, ref in db.deleted[cls]:
                if deleted <= since:
                    break
                if object_matches(subs, cls, ref):
                    last = max(last, deleted)
                    if created <= since:
                        deletes.append((cls, ref, deleted))
        return self._sorted(creates), self._sorted(mods), self._sorted(deletes), last

    # ------------------------------------------------------------ event.next
    def register(self, session, classes):
        subs = [parse_subscription(c) for c in classes]
        with self.cond:
            sub = self._subscription(session)
            sub.subs = subs + sub.subs

    def unregister(self, session, classes):
        subs = [parse_subscription(c) for c in classes]
        with self.cond:
            sub = self._subscription(session)
            sub.subs = [s for s in sub.subs if s not in subs]

    def _subscription(self, session):
        # Next.get_subscription: made on first use, from the current event id on.
        if session not in self.subscriptions:
            self.subscriptions[session] = _Subscription(self.next_id)
        return self.subscriptions[session]

    def next(self, session):
        """xapi_event.ml next: block until the queue holds events after the session's last
        one, return those its subscription selects; EVENTS_LOST when some were dropped."""
        with self.cond:
            if session not in self.subscriptions:
                raise XapiError("SESSION_NOT_REGISTERED", trackid(session))
            sub = self.subscriptions[session]
        while not self.sim.stopping.is_set():
            time.sleep(NEXT_DELAY[0])
            with self.sim.db.lock:
                self.sim.db.sync()
            with self.cond:
                start, end = sub.last_id, self.next_id
                sub.last_id = end
            if start == end:
                self._wait(lambda e=end: self.next_id != e or sub.invalid)
                if sub.invalid:
                    raise XapiError("SESSION_INVALID", session)
                continue
            with self.cond:
                if self.highest_forgotten >= start:
                    raise XapiError("EVENTS_LOST")
                picked = [
                    ev
                    for _s, ev in self.queue
                    if start <= int(ev["id"]) < end
                    and object_matches(sub.subs, ev["class"], ev["ref"])
                ]
            if picked:
                return picked
        return []


def _event(cls, ref, stamp, op, snapshot=None):
    # event_types.ml event, as event.from builds it: the generation as id, ts "0.0", the
    # class lower-cased; `del` has no snapshot (an absent option field).
    ev = {
        "id": str(stamp),
        "timestamp": "0.0",
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
    }
    if snapshot is not None:
        ev["snapshot"] = _typed_record(cls, snapshot)
    return ev


def _typed_record(cls, rec):
    """A snapshot as API.rpc_of_<class>_t writes it: int fields typed (the database keeps them
    as decimal strings, sim.py _json_typed)."""
    ints = [f[0] for f in schema.fields(cls) if f[1] == "int"]

    def typed(k, v):
        return int(v) if k in ints and isinstance(v, str) and v.lstrip("-").isdigit() else v

    return dict((k, typed(k, v)) for k, v in rec.items())


# ------------------------------------------------------------------- messages
@message("event.from")
def event_from(ctx, classes, token, timeout):
    return ctx.sim.events.event_from(ctx.session, classes, token, float(timeout))


@message("event.next")
def event_next(ctx):
    return ctx.sim.events.next(ctx.session)


@message("event.register")
def event_register(ctx, classes):
    ctx.sim.events.register(ctx.session, classes)


@message("event.unregister")
def event_unregister(ctx, classes):
    ctx.sim.events.unregister(ctx.session, classes)


@message("event.get_current_id")
def event_get_current_id(ctx):
    # xapi_event.ml get_current_id: Next.id
    with ctx.sim.events.cond:
        return str(ctx.sim.events.next_id)


@message("event.inject")
def event_inject(ctx, cls, ref):
    """xapi_event.ml inject: the object must be of that class (HANDLE_INVALID [class; ref]);
    touched, it reads as modified to an event.from from the token returned (generation - 1)."""
    if cls not in ctx.db.tables or ref not in ctx.db.tables[cls]:
        raise XapiError("HANDLE_INVALID", cls, ref)
    return token_string(ctx.db.touch(cls, ref) - 1, 0)
