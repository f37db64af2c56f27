"""The error contract: every failure leaves the plugin as XenAPIPlugin.Failure(code,
[message, details-json]) with a stable XENVOL_* code. See docs/plugin-api.md."""

import json

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List  # noqa: F401

INVALID_ARGUMENT = "XENVOL_INVALID_ARGUMENT"
INVALID_CONNECTION_INFO = "XENVOL_INVALID_CONNECTION_INFO"
UNKNOWN_DRIVER = "XENVOL_UNKNOWN_DRIVER"
UNSUPPORTED_VOLUME = "XENVOL_UNSUPPORTED_VOLUME"
VM_NOT_FOUND = "XENVOL_VM_NOT_FOUND"
VDI_NOT_FOUND = "XENVOL_VDI_NOT_FOUND"
DEVICE_IN_USE = "XENVOL_DEVICE_IN_USE"
BACKEND_FAILURE = "XENVOL_BACKEND_FAILURE"
DETACH_FAILED = "XENVOL_DETACH_FAILED"
BUSY = "XENVOL_BUSY"
CANCELLED = "XENVOL_CANCELLED"
XAPI_ERROR = "XENVOL_XAPI_ERROR"
# The operator's policy or a fixed rule refuses the call (policy.py).
POLICY_REFUSED = "XENVOL_POLICY_REFUSED"
# /etc/xenvol/xenvol.conf is not valid (details: file, key, value; line and column for JSON).
INVALID_CONFIG = "XENVOL_INVALID_CONFIG"
# Credentials given for a target differ from those of its SR already set up on the pool.
AUTH_MISMATCH = "XENVOL_AUTH_MISMATCH"
INTERNAL_ERROR = "XENVOL_INTERNAL_ERROR"
# The op id names another call (another function or other arguments; details: op_id, fn).
OP_ID_CONFLICT = "XENVOL_OP_ID_CONFLICT"
# route=strict: the VM's work belongs to another host (named in the details); ask it there.
WRONG_HOST = "XENVOL_WRONG_HOST"


class XenvolError(Exception):
    def __init__(self, code, message, **details):
        # type: (str, str, **Any) -> None
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.details = details

    def params(self):
        # type: () -> List[str]
        return [self.message, json.dumps(self.details, sort_keys=True)]


def invalid(field, problem, code=INVALID_CONNECTION_INFO):
    # type: (str, str, str) -> XenvolError
    """Bad input, naming the field (dotted path such as data.target_lun)."""
    return XenvolError(code, "%s: %s" % (field, problem), field=field)


def from_xapi(failure, doing):
    # type: (BaseException, str) -> XenvolError
    """A XenAPI.Failure met while doing something, as a xenvol error."""
    details = [str(d) for d in getattr(failure, "details", [str(failure)])]
    code = details[0] if details else "UNKNOWN"
    if code.startswith("SR_BACKEND_FAILURE"):
        sm_code = code[len("SR_BACKEND_FAILURE_") :] if code != "SR_BACKEND_FAILURE" else ""
        text = details[2] if len(details) > 2 else ""
        return XenvolError(
            BACKEND_FAILURE,
            "%s: storage backend error %s: %s" % (doing, sm_code or "?", text or code),
            sm_code=sm_code,
            sm_message=text,
            xapi_error=details[:3],
            stderr=(details[3] if len(details) > 3 else "")[:4000],
        )
    return XenvolError(
        XAPI_ERROR, "%s: XAPI error %s" % (doing, " ".join(details)), xapi_error=details
    )


def vanished(e):
    # type: (BaseException) -> bool
    """The error says an object is gone (HANDLE_INVALID): typically an SR another host's
    release forgot under us. Works on XenAPI.Failure and XenvolError alike."""
    details = getattr(e, "details", None)
    if isinstance(details, dict):
        details = details.get("xapi_error", [])
    return list(details or [])[:1] == ["HANDLE_INVALID"]
