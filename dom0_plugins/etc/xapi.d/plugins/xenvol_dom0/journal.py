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
process is gone: another boot, no such pid, or a pid with another start time.

A journal that cannot be read as written here (bytes that are not UTF-8, a line that is not
one of the entries above, a torn line before the last, ...) is never acted on: it is set aside
as <op id>.json.damaged (kept for the operator; gc and recover name it and what can be read
of it) and the host goes on. Writes after the first change are best effort: a full disk never
stops a rollback, and never turns a finished operation into a failure (the journal is removed
when nothing is left to do, which a full disk allows).

This module keeps the records (write, read back, liveness, set aside); recovery.py replays a
dead operation's."""

import errno
import fcntl
import json
import os
import re
import time

from . import log, paths
from .errors import INTERNAL_ERROR, XenvolError

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Set  # noqa: F401

# A recovery is tried by this many calls; then the journal waits for `gc --apply`.
MAX_ATTEMPTS = 3
_OP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Operations this process is recovering: their leases are broken, not waited for.
RECOVERING = set()  # type: Set[str]
# A journal that cannot be read is renamed to this (never re-read as live).
DAMAGED = ".damaged"


class Damaged(Exception):
    """A journal (or saved result) that is not what xenvol writes; the message says how."""


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
        self.path = path_of(op_id)
        tmp = self.path + ".new"
        self.n = 0
        self.pending = set()
        self.descs = {}  # type: Dict[int, str]
        self.fd = -1
        try:
            _mkdir(d)
            self.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
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
        except OSError as e:
            # A full or read-only journal directory: refused before any change.
            unlink(tmp)
            if self.fd >= 0:
                os.close(self.fd)
            raise XenvolError(
                INTERNAL_ERROR,
                "the journal cannot be written (%s): nothing was done" % (e.strerror or e),
            ) from None

    def _write(self, entry):
        """One line, whole or not at all (a short write on a full disk is cut off again, so
        that the next line never lands on a torn one)."""
        data = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        end = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            if os.write(self.fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, end)
            except OSError:
                pass
            raise

    def _write_or_log(self, entry):
        """A line that only saves work for a recovery (its compensations are idempotent): a
        write that fails is logged, and the operation goes on."""
        try:
            self._write(entry)
        except OSError as e:
            log.warning("journal %s: could not write %s (%s)" % (self.op_id, entry, e.strerror))

    def step(self, desc, undo, args):
        self._step({"step": self.n + 1, "desc": desc, "undo": undo, "args": args})
        self.pending.add(self.n)
        return self.n

    def left(self):
        """The steps still to undo or finish, in order."""
        return [self.descs[n] for n in sorted(self.pending)]

    def _step(self, entry):
        """A step is in the journal before its change, or the change is not made."""
        try:
            self._write(entry)
        except OSError as e:
            raise XenvolError(
                INTERNAL_ERROR,
                "the journal cannot be written (%s): %s not done"
                % (e.strerror or e, entry["desc"]),
            ) from None
        self.n += 1
        self.descs[self.n] = entry["desc"]

    def replace(self, ns, desc, undo, args):
        self._step(
            {"step": self.n + 1, "desc": desc, "undo": undo, "args": args, "replaces": list(ns)}
        )
        self.pending.difference_update(ns)
        self.pending.add(self.n)
        return self.n

    def done(self, n):
        self.pending.discard(n)
        self._write_or_log({"done": n})

    def commit(self):
        self.pending.clear()
        self._write_or_log({"commit": True})

    def lease(self, sr_uuid, value):
        # Best effort too (a rollback takes leases): a lease this line misses still names
        # this operation, whose journal file says whether it is alive.
        self._write_or_log({"lease": sr_uuid, "value": value})

    def cancel_path(self):
        return cancel_path(self.op_id)

    def cancelled(self):
        return os.path.exists(self.cancel_path())

    def close(self):
        """End of the operation: the journal goes unless steps are left to undo or finish
        (then it stays for the next call on this host, or gc, to recover)."""
        if not self.pending:
            unlink(self.path)
            unlink(self.cancel_path())
        os.close(self.fd)


def ensure_dir():
    _mkdir(paths.journal_dir())


def cancel_path(op_id):
    return os.path.join(paths.journal_dir(), op_id + ".cancel")


def unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v):
    return isinstance(v, str)


# What each kind of line holds (the key that names the kind, then its fields and checks).
_LINES = (
    ("op", {"op": _str, "fn": _str}),
    ("step", {"step": _int, "desc": _str, "undo": _str, "args": lambda v: isinstance(v, dict)}),
    ("done", {"done": _int}),
    ("commit", {"commit": lambda v: v is True}),
    ("lease", {"lease": _str, "value": _str}),
    ("attempt", {"attempt": _int}),
)


def _problem(n, e):
    """What is wrong with line n (1-based) as an entry, or None."""
    if not isinstance(e, dict):
        return "line %d is a JSON %s, not an entry" % (n, type(e).__name__)
    for kind, fields in _LINES:
        if kind in e:
            for key, ok in sorted(fields.items()):
                if key not in e or not ok(e[key]):
                    return "line %d (%s): %s is missing or not what xenvol writes" % (n, kind, key)
            if kind == "step" and not (
                isinstance(e.get("replaces", []), list)
                and all(_int(m) for m in e.get("replaces", []))
            ):
                return "line %d (step): replaces is not a list of step numbers" % n
            return None
    return "line %d is no journal entry (keys %s)" % (n, ", ".join(sorted(e)[:5]))


def read_lines(path):
    """The entries of a journal, checked; raises Damaged saying what is wrong. Bytes are read
    as UTF-8 whatever the locale (xapi gives a plugin no LANG: dom0's 3.6 would say ASCII).
    Only the last line may be torn (a kill while it was written: that change had not begun)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise Damaged("byte %d is not UTF-8" % bad.start) from None
    lines = text.split("\n")
    entries = []  # type: List[Dict[str, Any]]
    for i, line in enumerate(lines):
        if not line and i == len(lines) - 1:
            continue
        if not line.strip():
            raise Damaged("line %d is empty" % (i + 1))
        try:
            e = json.loads(line)
        except ValueError:
            if i == len(lines) - 1 and entries:
                continue  # torn last line: written before its change, which had not begun
            raise Damaged("line %d is not JSON%s" % (i + 1, " (torn)" if i else "")) from None
        problem = _problem(i + 1, e)
        if problem:
            raise Damaged(problem)
        entries.append(e)
    if not entries or "op" not in entries[0]:
        raise Damaged("no header line (op, fn, pid, ...) first")
    return entries


class Record:
    """A journal read back: header, steps still to undo or finish (in order), leases.
    Raises Damaged for a journal xenvol did not write as it is (see read_lines)."""

    def __init__(self, path):
        self.path = path
        self.steps = []
        self.leases = []
        self.attempts = 0
        steps = {}  # type: Dict[int, Dict[str, Any]]
        entries = read_lines(path)
        self.header = entries[0]
        for e in entries[1:]:
            if "op" in e:
                raise Damaged("a second header line")
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
        return self.header.get("op") or op_id_of(self.path)

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


def op_id_of(path):
    """The op id a journal's (or a set-aside journal's) file name says."""
    return os.path.basename(path).split(".json")[0]


def header(path):
    """A journal's header as far as it can be read ({} when it cannot): who runs it."""
    try:
        with open(path, "rb") as fh:
            first = json.loads(fh.readline().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return first if isinstance(first, dict) and _str(first.get("fn")) else {}


def set_aside(path, why):
    """Rename a journal that cannot be read out of the live ones (the caller holds its
    flock, so no recovery runs it meanwhile); returns the new path."""
    target = path + DAMAGED
    n = 1
    while os.path.exists(target):
        n += 1
        target = "%s%s.%d" % (path, DAMAGED, n)
    try:
        os.rename(path, target)
    except OSError as e:  # a read-only directory: still never run, and the host goes on
        log.warning("%s cannot be read (%s) nor set aside (%s)" % (path, why, e.strerror))
        return path
    log.warning(
        "%s cannot be read (%s); set aside as %s"
        % (os.path.basename(path), why, os.path.basename(target))
    )
    return target


def damaged():
    """The files set aside on this host, journals then kept results: [{kind, op_id, file,
    problem, fn, describes}], what each says as far as it can be read (a journal's step
    descriptions, in order), nothing guessed."""
    out = []
    for kind, d in (("journal", paths.journal_dir()), ("result", paths.results_dir())):
        for name in sorted(_listdir(d)):
            if DAMAGED in name:
                out.append(_damaged(kind, os.path.join(d, name)))
    return out


def _damaged(kind, path):
    # type: (str, str) -> Dict[str, Any]
    problem = "not a result xenvol wrote"
    if kind == "journal":
        try:
            read_lines(path)
            problem = "unreadable when it was set aside"
        except Damaged as why:
            problem = str(why)
        except OSError as failed:
            problem = failed.strerror or str(failed)
    fn, described = "", []
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    for line in text.split("\n"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and "op" in e and _str(e.get("fn")):
            fn = e["fn"]
        elif isinstance(e, dict) and _str(e.get("fn")) and kind == "result":
            fn = e["fn"]
        elif isinstance(e, dict) and _str(e.get("desc")):
            described.append(e["desc"])
    return {
        "kind": kind,
        "op_id": op_id_of(path),
        "file": os.path.basename(path),
        "problem": problem,
        "fn": fn,
        "describes": described,
    }


def journals():
    try:
        names = os.listdir(paths.journal_dir())
    except OSError:
        return []
    return sorted(os.path.join(paths.journal_dir(), n) for n in names if n.endswith(".json"))


def append(fd, entry):
    """A line a recovery adds (best effort: it only saves work for the next recovery)."""
    data = (json.dumps(entry) + "\n").encode()
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except OSError as e:
        try:
            os.ftruncate(fd, end)
        except OSError:
            pass
        log.warning("recovery: could not write %s (%s)" % (entry, e.strerror))


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


def dead(path):
    """Whether a journal belongs to a dead operation, without recovering it (one that cannot
    be read is set aside as it is found, and is no live journal any more)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if os.fstat(fd).st_nlink == 0:
            return False
        try:
            rec = Record(path)
        except Damaged as e:
            set_aside(path, e)
            return True  # its flock is free: dead (and no live journal any more)
        return not process_alive(rec.header)
    finally:
        os.close(fd)
