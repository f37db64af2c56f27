"""Recovery: a dead operation's journal replayed, its steps undone (or finished) newest
first by the compensations they name (undo.replay, the loop a call's own rollback runs too),
and the SR leases it may hold dropped through the compensation lease.py registers. The
journal itself only keeps the records (journal.py), as sm's journaler does."""

import fcntl
import os

from . import journal, log
from .undo import find, replay

# The compensation that drops a dead operation's SR lease (lease.drop registers under it).
DROP_LEASE = "drop_lease"


def recover(call, path, force=False):
    """Roll back (or finish) the operation of a dead journal. Returns "alive" (its owner, or
    another recoverer, holds it), "gone", "recovered", "failed" (kept, attempt counted), or
    "damaged" (it cannot be read: set aside, nothing done)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return "gone"
    op_id = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return "alive"
        if os.fstat(fd).st_nlink == 0:
            return "gone"  # recovered by another call between our open and our lock
        try:
            rec = journal.Record(path)
        except journal.Damaged as e:
            journal.set_aside(path, e)
            return "damaged"
        if journal.process_alive(rec.header):
            return "alive"
        if rec.attempts >= journal.MAX_ATTEMPTS and not force:
            return "failed"
        op_id = rec.op_id
        journal.RECOVERING.add(op_id)
        log.step("recovering a dead operation", **rec.describe())
        steps = [(s["step"], s["desc"], s["undo"], s["args"]) for s in reversed(rec.steps)]
        failed = replay(call, steps, lambda n, _d: journal.append(fd, {"done": n}), _could_not)
        for sr_uuid, value in rec.leases:
            find(DROP_LEASE)(call, sr_uuid=sr_uuid, value=value)
        if failed:
            journal.append(fd, {"attempt": rec.attempts + 1})
            log.warning("could not recover operation %s" % op_id, left=failed)
            return "failed"
        journal.unlink(path)
        journal.unlink(journal.cancel_path(op_id))
        log.step("recovered operation %s" % op_id)
        return "recovered"
    finally:
        journal.RECOVERING.discard(op_id)
        os.close(fd)


def _could_not(_description, name):
    return "recovery: could not %s" % name


def recover_dead(call, skip=None):
    """Recover every dead journal on this host (the sweep each changing call starts with:
    a directory listing, no XAPI call, when there is none)."""
    out = {}
    for path in journal.journals():
        if path != skip:
            out[path] = recover(call, path)
    return out
