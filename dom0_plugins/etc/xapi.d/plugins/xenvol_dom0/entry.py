"""How the plugin's functions meet XAPI: JSON results, and the error contract.

Every function is wrapped so that a xenvol error leaves as XenAPIPlugin.Failure(code,
[message, details-json]), a XAPI error met on the way as XENVOL_XAPI_ERROR, and anything
unexpected as XENVOL_INTERNAL_ERROR — never a traceback, never a secret. The function works
on the plugin's own local session (call.local_session), not on the caller's."""

import os
import sys

# What answers while /etc/xenvol/xenvol.conf is invalid: the rest refuse with
# XENVOL_INVALID_CONFIG before they touch anything.
CONFIG_FREE = ("version", "check_config", "cancel", "probe")

# Nothing else at import time: a cold start pays only for what the called function uses
# (version: no XAPI session, no journal, no logging; the others import operations on call).


def _wrap(name, fn):
    import json

    import XenAPI

    from . import journal, log, operations, runner, settings
    from .call import local_session
    from .errors import INTERNAL_ERROR, INVALID_ARGUMENT, XenvolError, from_xapi, invalid
    from .redact import SCRUB, without_paths
    from .version import API_LEVEL

    journaled = name in operations.JOURNALED

    def plugin_function(_caller_session, args):
        # The string map as given (connection_info is still JSON text: parsed, it is
        # searched for secrets inside strings too, operations._connection_info).
        SCRUB.remember_in(args, False)
        args = dict(args)
        # The caller's id of this operation (a retry with the same id gets the same result).
        op_id = args.pop("op_id", "") or _new_op_id()
        log.step("call %s" % name, args=sorted(args), op_id=op_id)
        try:
            if not journal.valid_op_id(op_id):
                raise invalid(
                    "op_id", "is not an operation id (letters, digits, . _ -)", INVALID_ARGUMENT
                )
            if name not in CONFIG_FREE:
                settings.load()  # an invalid xenvol.conf: XENVOL_INVALID_CONFIG, nothing done
            with local_session() as session:
                result = runner.run(name, fn, session, args, op_id, journaled)
        except XenvolError as e:
            return _fail(name, e)
        except XenAPI.Failure as f:
            return _fail(name, from_xapi(f, name))
        except Exception as e:
            return _fail(
                name,
                XenvolError(
                    INTERNAL_ERROR, "%s failed: %s: %s" % (name, type(e).__name__, without_paths(e))
                ),
            )
        log.step("%s succeeded" % name)
        if isinstance(result, dict):
            # The client checks the plugin's level on its first answer: no version() call.
            result = dict(
                result, api_level=API_LEVEL, wait_limit=settings.wait_limit(settings.read()[0])
            )
        return json.dumps(result, sort_keys=True)

    plugin_function.__name__ = name
    return plugin_function


def _new_op_id():
    from .ids import random_uuid

    return random_uuid()


def _fail(name, error):
    import XenAPIPlugin

    from . import log
    from .redact import SCRUB, mask

    params = [SCRUB(p) for p in error.params()]
    log.warning("%s failed: %s %s" % (name, error.code, params[0]), details=mask(error.details))
    raise XenAPIPlugin.Failure(error.code, params)


def utf8_io():
    """xapi execs a plugin with PATH as its whole environment, so no LANG: Python 3.6 (a build
    without the PEP 538 locale coercion) then decodes argv and encodes stdout as ASCII, and a
    call or a result with one non-ASCII character dies in XenAPIPlugin. xapi writes the call
    in UTF-8 and reads the answer as UTF-8; say so to Python before dispatch."""
    sys.argv[1:] = [os.fsencode(a).decode("utf-8", "replace") for a in sys.argv[1:]]
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        sys.stdout = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)


def version(_caller_session, args):
    """version() without a session, the journal or the log: the cheapest call there is."""
    import json

    from . import settings
    from .version import API_LEVEL, VERSION

    if args:
        return table()["version_checked"](_caller_session, args)
    return json.dumps(
        {
            "plugin": "xenvol",
            "version": VERSION,
            "api_level": API_LEVEL,
            "wait_limit": settings.wait_limit(settings.read()[0]),
            "config": settings.state(),
        },
        sort_keys=True,
    )


class _Table(dict):
    """name -> plugin function, made on first use (XenAPIPlugin.dispatch asks `in`, then [])."""

    def __contains__(self, name):
        return name == "version" or name in _operations().FUNCTIONS

    def __getitem__(self, name):
        if name == "version":
            return version
        if name == "version_checked":
            name = "version"
        elif name not in _operations().FUNCTIONS:
            raise KeyError(name)
        return _wrap(name, getattr(_operations(), name))


def _operations():
    from . import operations

    return operations


def table():
    return _Table()
