"""An operation's life, around one plugin function (entry.py's wrapper calls run): a retry
of a finished run answered with its kept result, the wait for a live run of the same op id,
the recovery sweep of this host's dead operations, the operation's journal opened and closed,
and the secrets the client made for the call (named in its arguments) consumed at its end.
call.py keeps the per-call context (the Op, the Call) that the function works in."""

import json
import time

import XenAPI

from . import call as call_mod
from . import journal, opid, recovery
from .call import Call, Op
from .check import is_uuid
from .errors import BUSY, CANCELLED, WRONG_HOST, XenvolError
from .marks import MADE_BY


def run(name, fn, session, args, op_id, journaled):
    """Run one plugin function as operation op_id. A changing function first answers a retry
    of a finished run of the same op id with its kept result (the same function and
    arguments only: opid.py), or waits for a live one, recovers the dead operations of this
    host, and keeps a journal of its own steps."""
    op = call_mod.CURRENT[0] = Op(op_id, name)
    if not journaled:
        return fn(session, args)
    secret_value = opid.secret_reader(session.xenapi, op.known_secrets)
    kept = opid.saved(op_id)
    if kept is not None:
        return _again(session, kept, name, args, secret_value)
    own = journal.path_of(op_id)
    running = journal.header(own).get("fn")
    if running and running != name:
        raise opid.conflict(
            op_id,
            running,
            "already used by a %s call that has not finished; give this %s a new op_id"
            % (running, name),
        )
    call = Call(session)
    while recovery.recover(call, own) == "alive":
        if time.time() >= call.wait_deadline():
            raise XenvolError(BUSY, "operation %s is still running; try again" % op_id, op_id=op_id)
        time.sleep(0.1)
    kept = opid.saved(op_id)
    if kept is not None:
        return _again(session, kept, name, args, secret_value)
    op.journal = journal.Journal(op_id, name, call.host_uuid)
    # The secrets the client made for this call go when it ends, unless it was sent to the
    # wrong host: the client sends it again, with them, to the host the answer names.
    consume = True
    try:
        call.checkpoint("starting %s" % name)  # cancelled before it started
        # With our journal open: a lease the recovery of another operation takes names us.
        recovery.recover_dead(call, skip=op.journal.path)
        result = fn(session, args)
        opid.save(op_id, name, args, secret_value, result)
        return result
    except XenvolError as e:
        if e.code == CANCELLED:
            _cancel_report(op, e)
        consume = e.code != WRONG_HOST
        raise
    finally:
        op.journal.close()
        if consume:
            consume_secrets(session.xenapi, client_secrets(args))


def _again(session, kept, name, args, secret_value):
    """A finished run's result for its retry; the secrets the retry's client made for it are
    consumed as the run would have."""
    result = opid.answer(kept, call_mod.CURRENT[0].op_id, name, args, secret_value)
    consume_secrets(session.xenapi, client_secrets(args))
    return result


def client_secrets(args):
    """The uuids of the secrets a client made for this call (data.*password_secret)."""
    try:
        data = json.loads(args.get("connection_info") or "{}").get("data")
    except (ValueError, AttributeError):
        return []
    if not isinstance(data, dict):
        return []
    return [v for k, v in sorted(data.items()) if k.endswith("password_secret") and is_uuid(v)]


def _cancel_report(op, error):
    """A cancelled call says what it did not roll back: never "rolled back" over a change
    that stands."""
    left = op.journal.left() if op.journal else []
    error.details["rolled_back"] = not left
    if left:
        error.details["left"] = left
        error.message = "%s; NOT rolled back: %s (left for recovery)" % (
            error.message,
            "; ".join(left),
        )


def consume_secrets(x, uuids):
    """Destroy the secrets the client made for this call (tagged xenvol=client): PBD.create
    copied what it needed into the PBD's own secret (xen-api xapi_pbd.ml duplicate_passwds),
    and nothing holding a password outlives the operation."""
    for uuid in filter(is_uuid, uuids):
        try:
            # One filtered read for the ref and the tag (a checked uuid: no quote in it).
            found = x.secret.get_all_records_where('field "uuid" = "%s"' % uuid)
            for ref, rec in found.items():
                if rec["other_config"].get(MADE_BY) == "client":
                    x.secret.destroy(ref)
        except XenAPI.Failure:
            pass  # gone already
