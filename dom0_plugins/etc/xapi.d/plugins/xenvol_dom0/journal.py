"""The intent journal: what an operation is doing, on disk before each change, so that a call
killed at any point (kill -9, a host reboot) is rolled back, or completed, by the next call
that meets it, at once and without waiting out a timeout.

One file per operation, <journal_dir>/<op id>.json, JSON lines appended and fsync'd:
  {"op", "fn", "pid", "start", "boot", "host", "time"}   the header: who runs it
  {"step": n, "desc", "undo", "args"}  written before the change; `undo` names a function of
                                       undo.UNDO that undoes it (or, for a detach, finishes
                                       it), whether or not the change happened
  {"done": n}       nothing left to do for step n (undone, finished, or refused by XAPI)
  {"step": n, ..., "replaces": [m, ...]}   one step that stands for steps m... from now on
                                       (in one line: a kill leaves either the old or the new)
  {"commit": true}  the steps so far stay: the operation succeeded up to here
  {"lease": sr uuid, "value": v}   a pool-wide SR lease the operation may hold
  {"attempt": n}    a recovery that could not finish
The owner holds an flock on the file from before it is visible until it ends, and removes it
when it ends with nothing left to do. A journal is dead when its flock is free and its
process is gone: another boot, no such pid, or a pid with another start time."""

import errno
import fcntl
import json
import os
import re
import time

from . import log, paths

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Set  # noqa: F401

# A recovery is tried by this many calls; then the journal waits for `gc --apply`.
MAX_ATTEMPTS = 3
# Results of finished operations are kept this long, for retries with the same op id.
RESULT_TTL = 86400
_OP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Operations this process is recovering: their leases are broken, not waited for.
RECOVERING = set()  # type: Set[str]


def valid_op_id(op_id):
    return bool(_OP_ID.match(op_id or ""))


def boot_id():
    try:
        with open(paths.boot_id_file()) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def start_time(pid):
    """Field 22 of /proc/<pid>/stat (starttime, in clock ticks since boot), or None."""
    try:
        with open("/proc/%d/stat" % int(pid)) as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(header):
    if header.get("boot") != boot_id():
        return False
    started = start_time(header.get("pid", 0))
    return started is not None and started == header.get("start")


def path_of(op_id):
    return os.path.join(paths.journal_dir(), op_id + ".json")


def _mkdir(d):
    if not os.path.isdir(d):
        try:
            os.makedirs(d, 0o700)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def _fsync_dir(d):
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The running operation's journal, created flocked and fsync'd before it is visible."""

    def __init__(self, op_id, fn, host_uuid):
        self.op_id = op_id
        d = paths.journal_dir()
        _mkdir(d)
        self.path = path_of(op_id)
        tmp = self.path + ".new"
        self.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.n = 0
        self.pending = set()
        pid = os.getpid()
        self._write(
            {
                "op": op_id,
                "fn": fn,
                "pid": pid,
                "start": start_time(pid),
                "boot": boot_id(),
                "host": host_uuid,
                "time": int(time.time()),
            }
        )
        os.rename(tmp, self.path)
        _fsync_dir(d)

    def _write(self, entry):
        os.write(self.fd, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(self.fd)

    def step(self, desc, undo, args):
        self.n += 1
        self._write({"step": self.n, "desc": desc, "undo": undo, "args": args})
        self.pending.add(self.n)
        return self.n

    def replace(self, ns, desc, undo, args):
        self.n += 1
        self._write(
            {"step": self.n, "desc": desc, "undo": undo, "args": args, "replaces": list(ns)}
        )
        self.pending.difference_update(ns)
        self.pending.add(self.n)
        return self.n

    def done(self, n):
        self._write({"done": n})
        self.pending.discard(n)

    def commit(self):
        self._write({"commit": True})
        self.pending.clear()

    def lease(self, sr_uuid, value):
        self._write({"lease": sr_uuid, "value": value})

    def cancel_path(self):
        return cancel_path(self.op_id)

    def cancelled(self):
        return os.path.exists(self.cancel_path())

    def close(self):
        """End of the operation: the journal goes unless steps are left to undo or finish
        (then it stays for the next call on this host, or gc, to recover)."""
        if not self.pending:
            _unlink(self.path)
            _unlink(self.cancel_path())
        os.close(self.fd)


def ensure_dir():
    _mkdir(paths.journal_dir())


def cancel_path(op_id):
    return os.path.join(paths.journal_dir(), op_id + ".cancel")


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class Record:
    """A journal read back: header, steps still to undo or finish (in order), leases."""

    def __init__(self, path):
        self.path = path
        self.header = {}
        self.steps = []
        self.leases = []
        self.attempts = 0
        steps = {}  # type: Dict[int, Dict[str, Any]]
        with open(path) as fh:
            lines = fh.read().split("\n")
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a torn last line: that change had not begun
            if "op" in e:
                self.header = e
            elif "step" in e:
                for n in e.get("replaces", ()):
                    steps.pop(n, None)
                steps[e["step"]] = e
            elif "done" in e:
                steps.pop(e["done"], None)
            elif "commit" in e:
                steps.clear()
            elif "lease" in e:
                self.leases.append((e["lease"], e["value"]))
            elif "attempt" in e:
                self.attempts += 1
        self.steps = [steps[n] for n in sorted(steps)]

    @property
    def op_id(self):
        return self.header.get("op") or os.path.basename(self.path)[: -len(".json")]

    def describe(self):
        return {
            "op_id": self.op_id,
            "fn": self.header.get("fn", ""),
            "pid": self.header.get("pid"),
            "started": self.header.get("time"),
            "other_boot": self.header.get("boot") != boot_id(),
            "left": [s["desc"] for s in self.steps],
            "attempts": self.attempts,
        }


def journals():
    try:
        names = os.listdir(paths.journal_dir())
    except OSError:
        return []
    return sorted(os.path.join(paths.journal_dir(), n) for n in names if n.endswith(".json"))


def recover(call, path, force=False):
    """Roll back (or finish) the operation of a dead journal. Returns "alive" (its owner, or
    another recoverer, holds it), "gone", "recovered", or "failed" (kept, attempt counted)."""
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
        rec = Record(path)
        if rec.header and process_alive(rec.header):
            return "alive"
        if rec.attempts >= MAX_ATTEMPTS and not force:
            return "failed"
        op_id = rec.op_id
        RECOVERING.add(op_id)
        log.step("recovering a dead operation", **rec.describe())
        failed = _undo(call, fd, rec)
        from . import lease

        for sr_uuid, value in rec.leases:
            lease.drop(call, sr_uuid, value)
        if failed:
            os.write(fd, (json.dumps({"attempt": rec.attempts + 1}) + "\n").encode())
            os.fsync(fd)
            log.warning("could not recover operation %s" % op_id, left=failed)
            return "failed"
        _unlink(path)
        _unlink(cancel_path(op_id))
        log.step("recovered operation %s" % op_id)
        return "recovered"
    finally:
        RECOVERING.discard(op_id)
        os.close(fd)


def _undo(call, fd, rec):
    from .undo import find

    failed = []
    for step in reversed(rec.steps):
        try:
            find(step["undo"])(call, **step["args"])
        except Exception as e:  # keep going; the journal keeps what is left
            log.warning("recovery: could not %s (%s: %s)" % (step["undo"], type(e).__name__, e))
            failed.append(step["desc"])
            continue
        os.write(fd, (json.dumps({"done": step["step"]}) + "\n").encode())
        os.fsync(fd)
    return failed


def recover_dead(call, skip=None):
    """Recover every dead journal on this host (the sweep each changing call starts with:
    a directory listing, no XAPI call, when there is none)."""
    out = {}
    for path in journals():
        if path != skip:
            out[path] = recover(call, path)
    return out


def orphan_temp_files():
    """`.new` journals of processes killed before they were renamed into place (nothing
    was done under them), and cancel marks of operations that are gone."""
    out = []
    for name in _listdir(paths.journal_dir()):
        path = os.path.join(paths.journal_dir(), name)
        if name.endswith(".new"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                out.append(path)
            except OSError:
                pass
            finally:
                os.close(fd)
        elif name.endswith(".cancel") and not os.path.exists(path[: -len(".cancel")] + ".json"):
            out.append(path)
    return out


def _listdir(d):
    try:
        return os.listdir(d)
    except OSError:
        return []


# ---------------------------------------------------------------------- results by op id
def result_path(op_id):
    return os.path.join(paths.results_dir(), op_id + ".json")


def saved_result(op_id):
    try:
        with open(result_path(op_id)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def save_result(op_id, result):
    d = paths.results_dir()
    _mkdir(d)
    tmp = result_path(op_id) + ".new"
    with open(tmp, "w") as fh:
        json.dump(result, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, result_path(op_id))
    now = time.time()
    for name in _listdir(d):
        path = os.path.join(d, name)
        try:
            if os.stat(path).st_mtime < now - RESULT_TTL:
                os.unlink(path)
        except OSError:
            pass


def dead(path):
    """Whether a journal belongs to a dead operation, without recovering it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        rec = Record(path)
        return not (rec.header and process_alive(rec.header))
    finally:
        os.close(fd)
