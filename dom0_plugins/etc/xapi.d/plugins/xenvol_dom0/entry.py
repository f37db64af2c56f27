"""How the plugin's functions meet XAPI: JSON results, and the error contract.

Every function is wrapped so that a xenvol error leaves as XenAPIPlugin.Failure(code,
[message, details-json]), a XAPI error met on the way as XENVOL_XAPI_ERROR, and anything
unexpected as XENVOL_INTERNAL_ERROR — never a traceback, never a secret. The function works
on the plugin's own local session (call.local_session), not on the caller's."""
import io
import json
import os
import sys
import uuid

import XenAPI
import XenAPIPlugin

from . import call, journal, log, operations, settings
from .call import local_session
from .errors import INTERNAL_ERROR, INVALID_ARGUMENT, XenvolError, from_xapi, invalid
from .redact import SCRUB, mask, without_paths
from .version import API_LEVEL


def _wrap(name, fn):
    journaled = name in operations.JOURNALED

    def plugin_function(_caller_session, args):
        SCRUB.remember_in(args)
        args = dict(args)
        # The caller's id of this operation (a retry with the same id gets the same result).
        op_id = args.pop("op_id", "") or str(uuid.uuid4())
        log.step("call %s" % name, args=sorted(args), op_id=op_id)
        try:
            if not journal.valid_op_id(op_id):
                raise invalid("op_id", "is not an operation id (letters, digits, . _ -)",
                              INVALID_ARGUMENT)
            with local_session() as session:
                result = call.run(name, fn, session, args, op_id, journaled)
        except XenvolError as e:
            return _fail(name, e)
        except XenAPI.Failure as f:
            return _fail(name, from_xapi(f, name))
        except Exception as e:
            return _fail(name, XenvolError(INTERNAL_ERROR, "%s failed: %s: %s"
                                           % (name, type(e).__name__, without_paths(e))))
        log.step("%s succeeded" % name)
        if isinstance(result, dict):
            # The client checks the plugin's level on its first answer: no version() call.
            result = dict(result, api_level=API_LEVEL,
                          wait_limit=settings.wait_limit(settings.load()))
        return json.dumps(result, sort_keys=True)
    plugin_function.__name__ = name
    return plugin_function


def _fail(name, error):
    params = [SCRUB(p) for p in error.params()]
    log.warning("%s failed: %s %s" % (name, error.code, params[0]),
                details=mask(error.details))
    raise XenAPIPlugin.Failure(error.code, params)


def utf8_io():
    """xapi execs a plugin with PATH as its whole environment, so no LANG: Python 3.6 (a build
    without the PEP 538 locale coercion) then decodes argv and encodes stdout as ASCII, and a
    call or a result with one non-ASCII character dies in XenAPIPlugin. xapi writes the call
    in UTF-8 and reads the answer as UTF-8; say so to Python before dispatch."""
    sys.argv[1:] = [os.fsencode(a).decode("utf-8", "replace") for a in sys.argv[1:]]
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        sys.stdout = io.open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)


def table():
    return dict((name, _wrap(name, getattr(operations, name))) for name in operations.FUNCTIONS)
