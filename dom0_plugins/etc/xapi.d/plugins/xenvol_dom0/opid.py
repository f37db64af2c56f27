"""An operation id bound to its call: the kept result of a finished changing call answers only
a retry of the same function with the same arguments; any other call with that id is refused
XENVOL_OP_ID_CONFLICT, naming the function the id belongs to (docs/plugin-api.md).

<results_dir>/<op id>.json: {"xenvol-result": 1, "op_id", "fn", "digest", "passed",
"result"}, kept a day. Each digest is salted SHA-256 of the function and its canonical
arguments (sorted keys, connection_info as parsed JSON; op_id and the routing hint `route` left
out). `passed` digests them as passed; `digest` with each XAPI secret a `..._secret` key names
replaced by its value, since a client's retry stashes the same password in a new secret (the
same call naming another uuid). A retry matches either: the same request asked again (its
secrets consumed by the first run, so unreadable), or the same call with new secrets. No
argument is stored, only the digests. A result file that cannot be read is set aside
(<op id>.json.damaged, kept for the operator) and its op id is refused from then on: what it
answered is unknown."""

import binascii
import hashlib
import json
import os
import time

from . import journal, log, paths
from .errors import OP_ID_CONFLICT, XenvolError
from .redact import is_secret_ref

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional  # noqa: F401

# Results of finished operations are kept this long, for retries with the same op id.
RESULT_TTL = 86400
# Arguments that say where a call runs, not what it does.
NOT_BOUND = ("op_id", "route")
FORMAT = "xenvol-result"


def result_path(op_id):
    # type: (str) -> str
    return os.path.join(paths.results_dir(), op_id + ".json")


def _resolve(obj, secret_value):
    # type: (Any, Callable[[str], str]) -> Any
    if isinstance(obj, dict):
        return dict(
            (
                k,
                {"secret": secret_value(v)}
                if is_secret_ref(k) and isinstance(v, str) and v
                else _resolve(v, secret_value),
            )
            for k, v in obj.items()
        )
    if isinstance(obj, list):
        return [_resolve(v, secret_value) for v in obj]
    return obj


def digest(fn, args, secret_value=None, salt=None):
    # type: (str, Dict[str, Any], Optional[Callable[[str], str]], Optional[str]) -> str
    """sha256:<salt>:<hex> of the call as its function and canonical arguments say; with
    secret_value, each secret by its value (else by the uuid passed)."""
    canonical = {}
    for k, v in args.items():
        if k in NOT_BOUND:
            continue
        if k == "connection_info" and isinstance(v, str):
            try:
                parsed = json.loads(v)
                v = {"json": _resolve(parsed, secret_value) if secret_value else parsed}
            except ValueError:
                pass
        canonical[k] = v
    text = json.dumps({"fn": fn, "args": canonical}, sort_keys=True, ensure_ascii=True)
    salt = salt or binascii.hexlify(os.urandom(8)).decode("ascii")
    return "sha256:%s:%s" % (salt, hashlib.sha256((salt + text).encode("utf-8")).hexdigest())


def secret_reader(x, known):
    # type: (Any, Dict[str, str]) -> Callable[[str], str]
    """secret uuid -> its value: those the call read already, else one read each."""

    def value(uuid):
        # type: (str) -> str
        if uuid not in known:
            try:
                known[uuid] = x.secret.get_value(x.secret.get_by_uuid(uuid))
            except Exception:  # a secret that is gone or unreadable: only its uuid binds
                return "uuid:" + uuid
        return known[uuid]

    return value


def conflict(op_id, fn, message):
    # type: (str, str, str) -> XenvolError
    return XenvolError(OP_ID_CONFLICT, "op_id %s: %s" % (op_id, message), op_id=op_id, fn=fn)


def _set_aside(path):
    # type: (str) -> str
    return journal.set_aside(path, "a saved result xenvol did not write as it is")


def saved(op_id):
    # type: (str) -> Optional[Dict[str, Any]]
    """The kept record of a finished op id, or None. Raises OP_ID_CONFLICT for one whose
    kept result cannot be read (set aside now or before)."""
    path = result_path(op_id)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        raw = None
    if raw is None:
        if os.path.exists(path + journal.DAMAGED):
            raise _unreadable(op_id)
        return None
    try:
        rec = json.loads(raw.decode("utf-8"))
        ok = (
            isinstance(rec, dict)
            and rec.get(FORMAT) == 1
            and isinstance(rec.get("fn"), str)
            and isinstance(rec.get("digest"), str)
            and isinstance(rec.get("passed"), str)
            and "result" in rec
        )
    except ValueError:
        ok = False
    if not ok:
        _set_aside(path)
        raise _unreadable(op_id)
    return rec


def _unreadable(op_id):
    # type: (str) -> XenvolError
    return conflict(
        op_id,
        "",
        "its kept result could not be read (set aside as %s.json%s); what it answered is "
        "unknown: list the attachments, and use a new op_id" % (op_id, journal.DAMAGED),
    )


def answer(rec, op_id, fn, args, secret_value):
    # type: (Dict[str, Any], str, str, Dict[str, Any], Callable[[str], str]) -> Any
    """The kept result, if this call is the one it answered; else OP_ID_CONFLICT."""
    if rec["fn"] != fn:
        raise conflict(
            op_id,
            rec["fn"],
            "already used by a %s call (finished); an op id names one call: give this %s a new "
            "op_id" % (rec["fn"], fn),
        )
    if not _matches(rec["passed"], fn, args, None) and not _matches(
        rec["digest"], fn, args, secret_value
    ):
        raise conflict(
            op_id,
            rec["fn"],
            "already used by a %s call with other arguments (finished); an op id names one "
            "call: give this one a new op_id" % fn,
        )
    log.step("operation %s already done; its result again" % op_id)
    return rec["result"]


def _matches(kept, fn, args, secret_value):
    # type: (str, str, Dict[str, Any], Optional[Callable[[str], str]]) -> bool
    salt = kept.split(":")[1] if kept.count(":") == 2 else ""
    return digest(fn, args, secret_value, salt) == kept


def save(op_id, fn, args, secret_value, result):
    # type: (str, str, Dict[str, Any], Callable[[str], str], Any) -> None
    """Keep a finished call's result for its retries; a full or read-only results directory
    only loses that (logged): the call's change stands and its answer goes out."""
    d = paths.results_dir()
    tmp = result_path(op_id) + ".new"
    try:
        journal._mkdir(d)
        with open(tmp, "w") as fh:
            json.dump(
                {
                    FORMAT: 1,
                    "op_id": op_id,
                    "fn": fn,
                    "digest": digest(fn, args, secret_value),
                    "passed": digest(fn, args),
                    "result": result,
                },
                fh,
                sort_keys=True,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, result_path(op_id))
    except OSError as e:
        log.warning("could not keep the result of %s (%s); a retry runs it again" % (op_id, e))
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    now = time.time()
    for name in journal._listdir(d):
        path = os.path.join(d, name)
        try:
            if journal.DAMAGED not in name and os.stat(path).st_mtime < now - RESULT_TTL:
                os.unlink(path)
        except OSError:
            pass


def finished(op_id):
    # type: (str) -> bool
    try:
        return saved(op_id) is not None
    except XenvolError:
        return True
