"""How the plugin's functions meet XAPI: JSON results, and the error contract.

Every function is wrapped so that a xenvol error leaves as XenAPIPlugin.Failure(code,
[message, details-json]), a XAPI error met on the way as XENVOL_XAPI_ERROR, and anything
unexpected as XENVOL_INTERNAL_ERROR — never a traceback, never a secret. The function works
on the plugin's own local session (call.local_session), not on the caller's."""
import io
import json
import os
import sys

import XenAPI
import XenAPIPlugin

from . import log, operations
from .call import local_session
from .errors import INTERNAL_ERROR, XenvolError, from_xapi
from .redact import SCRUB, mask, without_paths


def _wrap(name, fn):
    def plugin_function(_caller_session, args):
        SCRUB.remember_in(args)
        log.step("call %s" % name, args=sorted(args))
        try:
            with local_session() as session:
                result = fn(session, args)
        except XenvolError as e:
            return _fail(name, e)
        except XenAPI.Failure as f:
            return _fail(name, from_xapi(f, name))
        except Exception as e:
            return _fail(name, XenvolError(INTERNAL_ERROR, "%s failed: %s: %s"
                                           % (name, type(e).__name__, without_paths(e))))
        log.step("%s succeeded" % name)
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
