"""How the plugin's functions meet XAPI: JSON results, and the error contract.

Every function is wrapped so that a xenvol error leaves as XenAPIPlugin.Failure(code,
[message, details-json]), a XAPI error met on the way as XENVOL_XAPI_ERROR, and anything
unexpected as XENVOL_INTERNAL_ERROR — never a traceback, never a secret."""
import json

import XenAPI
import XenAPIPlugin

from . import log, operations
from .errors import INTERNAL_ERROR, XenvolError, from_xapi
from .redact import SCRUB, mask


def _wrap(name, fn):
    def plugin_function(session, args):
        SCRUB.remember_in(args)
        log.step("call %s" % name, args=sorted(args))
        try:
            result = fn(session, args)
        except XenvolError as e:
            return _fail(name, e)
        except XenAPI.Failure as f:
            return _fail(name, from_xapi(f, name))
        except Exception as e:
            return _fail(name, XenvolError(INTERNAL_ERROR, "%s failed: %s: %s"
                                           % (name, type(e).__name__, e)))
        log.step("%s succeeded" % name)
        return json.dumps(result, sort_keys=True)
    plugin_function.__name__ = name
    return plugin_function


def _fail(name, error):
    params = [SCRUB(p) for p in error.params()]
    log.warning("%s failed: %s %s" % (name, error.code, params[0]),
                details=mask(error.details))
    raise XenAPIPlugin.Failure(error.code, params)


def table():
    return dict((name, _wrap(name, getattr(operations, name))) for name in operations.FUNCTIONS)
