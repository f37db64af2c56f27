"""One exception hierarchy for everything a caller can meet, mapped from the plugin's error
contract (docs/plugin-api.md) and from XAPI. Nobody has to parse a XenAPI.Failure list."""

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

Scrubber = Callable[[str], str]
# What works: the signed pack (there is no yum repository carrying xenvol) or the bare RPM file.
INSTALL_HINT = (
    "install the xenvol supplemental pack on it: `xenvol pack install HOST --iso "
    "xenvol-VERSION.iso --key RPM-GPG-KEY-xenvol --import-key` from an admin machine, "
    "or on the host `xe-install-supplemental-pack xenvol-VERSION.iso`, or "
    "`yum install ./xenvol-xapi-plugin-VERSION-1.noarch.rpm`"
)


class XenvolError(Exception):
    """Base class. `code` is the plugin's (or XAPI's) error code, `details` a dict, `host`
    the host uuid the call ran on when known."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        code: Optional[str] = None,
        details: Optional[Dict[str, Any]] = None,
        host: Optional[str] = None,
    ) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.code = code
        self.details: Dict[str, Any] = details or {}
        self.host = host

    @property
    def field(self) -> Any:
        return self.details.get("field")


class ConnectionFailed(XenvolError):
    """XAPI cannot be reached (the socket error is the exception's __context__). During a
    call, `op_id` (in details) names it: a changing call may still complete (attachments()
    tells, and the same call with that op_id returns its result)."""

    @property
    def op_id(self) -> Any:
        return self.details.get("op_id")


class InvalidInput(XenvolError):
    """Something the caller gave is wrong; `field` names it."""

    exit_code = 2


class InvalidConnectionInfo(InvalidInput):
    pass


class InvalidArgument(InvalidInput):
    pass


class DriverNotFound(InvalidInput):
    pass


class UnsupportedVolume(InvalidInput):
    pass


class PolicyRefused(InvalidInput):
    """The host's policy (/etc/xenvol/xenvol.conf) or a fixed rule refuses the call."""


class AuthMismatch(InvalidInput):
    """The credentials given for a target differ from those its SR is set up with."""


class OpIdConflict(InvalidInput):
    """The op_id given names another call: a finished or running call of another function
    (`fn` says which) or of the same function with other arguments. Nothing was done; give
    this call a new op_id (the plugin answers with a kept result only the same call again)."""

    @property
    def op_id(self) -> Any:
        return self.details.get("op_id")

    @property
    def fn(self) -> Any:
        return self.details.get("fn")


class NotFound(XenvolError):
    exit_code = 3


class VMNotFound(NotFound):
    pass


class HostNotFound(NotFound):
    pass


class VolumeNotFound(NotFound):
    """The storage came up but the volume is not in it (wrong LUN, missing VHD)."""


class BackendError(XenvolError):
    exit_code = 4


class BackendFailure(BackendError):
    """The storage manager failed: `sm_code` and `sm_message` say how (e.g. 68, login)."""

    @property
    def sm_code(self) -> Any:
        return self.details.get("sm_code")

    @property
    def sm_message(self) -> Any:
        return self.details.get("sm_message")


class DeviceBusy(BackendError):
    pass


class DetachFailed(BackendError):
    pass


class Busy(BackendError):
    """Another call held the same SR or VM for too long; try again."""


class OperationTimedOut(XenvolError):
    """The client stopped waiting and the outcome is unknown: the operation may still
    complete; attachments() tells. `op_id` (in details) retried returns its result."""

    exit_code = 8

    @property
    def op_id(self) -> Any:
        return self.details.get("op_id")


class Cancelled(XenvolError):
    """Interrupted (Ctrl-C): the operation was cancelled by its op id. details["outcome"]:
    "rolled back" (the plugin stopped at its next step and undid its work), "not rolled back"
    (it stopped, but some of its work stands: details["left"] says what, left for the host's
    recovery), "failed" (it failed on its own and rolled back), "completed" (it finished
    before the cancel), or "unknown" (it may still complete: attachments() tells). A plugin's
    own XENVOL_CANCELLED answer says rolled_back (and left) in its details."""

    exit_code = 130

    @property
    def op_id(self) -> Any:
        return self.details.get("op_id")

    @property
    def outcome(self) -> Any:
        if "outcome" in self.details:
            return self.details["outcome"]
        return "rolled back" if self.details.get("rolled_back", True) else "not rolled back"

    @property
    def rolled_back(self) -> bool:
        """Whether nothing of the operation stands."""
        return bool(self.outcome == "rolled back")


class PluginError(XenvolError):
    exit_code = 5


class PluginMissing(PluginError):
    pass


class PluginIncompatible(PluginError):
    pass


class InvalidConfig(PluginError):
    """A host's /etc/xenvol/xenvol.conf is not valid: `details` name the file, the key and
    the value (line and column for a JSON syntax error); that host's plugin refuses to work
    until it is fixed (`xenvol version` shows each host's state)."""


class XapiError(XenvolError):
    """XAPI refused something; `xapi_error` is its error list."""

    @property
    def xapi_error(self) -> Any:
        return self.details.get("xapi_error", [])


class AuthenticationFailed(XapiError):
    pass


class HostOffline(XapiError):
    """XAPI's HOST_OFFLINE: the host the call must run on is not live (xen-api
    message_forwarding.ml check_live refuses every call forwarded to it before it runs).
    `host` is its uuid; details carry host_name and xapi_error."""


class InternalError(XenvolError):
    pass


_BY_CODE: Dict[str, Type[XenvolError]] = {
    "XENVOL_INVALID_CONNECTION_INFO": InvalidConnectionInfo,
    "XENVOL_INVALID_ARGUMENT": InvalidArgument,
    "XENVOL_UNKNOWN_DRIVER": DriverNotFound,
    "XENVOL_UNSUPPORTED_VOLUME": UnsupportedVolume,
    "XENVOL_VM_NOT_FOUND": VMNotFound,
    "XENVOL_VDI_NOT_FOUND": VolumeNotFound,
    "XENVOL_DEVICE_IN_USE": DeviceBusy,
    "XENVOL_BACKEND_FAILURE": BackendFailure,
    "XENVOL_DETACH_FAILED": DetachFailed,
    "XENVOL_BUSY": Busy,
    "XENVOL_CANCELLED": Cancelled,
    "XENVOL_XAPI_ERROR": XapiError,
    "XENVOL_INTERNAL_ERROR": InternalError,
    "XENVOL_POLICY_REFUSED": PolicyRefused,
    "XENVOL_AUTH_MISMATCH": AuthMismatch,
    "XENVOL_INVALID_CONFIG": InvalidConfig,
    "XENVOL_OP_ID_CONFLICT": OpIdConflict,
}


def from_failure(
    failure_details: Sequence[Any], host: Optional[str] = None, scrub: Optional[Scrubber] = None
) -> XenvolError:
    """A XenAPI.Failure's details list as the matching exception."""
    details: List[str] = [str(d) for d in failure_details]
    if scrub:
        details = [scrub(d) for d in details]
    code = details[0] if details else "UNKNOWN"
    if code in _BY_CODE:
        message = details[1] if len(details) > 1 else code
        extra = {}
        if len(details) > 2:
            try:
                extra = json.loads(details[2])
            except ValueError:
                extra = {"raw": details[2]}
        return _BY_CODE[code](message, code, extra, host)
    if code == "SESSION_AUTHENTICATION_FAILED":
        return AuthenticationFailed(
            "login refused: wrong user name or password", code, {"xapi_error": details}, host
        )
    if code == "UUID_INVALID" and len(details) > 1 and details[1] == "VM":
        return VMNotFound("no VM with uuid %s" % details[2], code, {"xapi_error": details}, host)
    if code.startswith("SR_BACKEND_FAILURE"):
        return BackendFailure(
            "storage backend error %s: %s"
            % (code[len("SR_BACKEND_FAILURE_") :], details[2] if len(details) > 2 else ""),
            code,
            {
                "xapi_error": details,
                "sm_code": code[len("SR_BACKEND_FAILURE_") :],
                "sm_message": details[2] if len(details) > 2 else "",
            },
            host,
        )
    return XapiError("XAPI error %s" % " ".join(details), code, {"xapi_error": details}, host)


def plugin_failure(
    details: Sequence[Any], fn: str, host: Optional[str], scrub: Optional[Scrubber] = None
) -> XenvolError:
    """A failed plugin call as the matching exception; a missing plugin or function says
    how to install one."""
    code = str(details[0]) if details else "UNKNOWN"
    if code == "XENAPI_MISSING_PLUGIN":
        return PluginMissing(
            "host %s has no xenvol plugin: %s" % (host, INSTALL_HINT),
            code,
            {"xapi_error": list(details)},
            host,
        )
    if code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION":
        return PluginIncompatible(
            "the xenvol plugin on host %s has no function %s: upgrade it (%s)"
            % (host, fn, INSTALL_HINT),
            code,
            {"xapi_error": list(details)},
            host,
        )
    return from_failure(details, host, scrub)


def connection_lost(
    fn: str, op_id: Optional[str], host: Optional[str], cause: object
) -> XenvolError:
    """A transport failure (socket, TLS, HTTP) during a call, named by its op id."""
    if op_id:
        text = (
            "%s (op id %s): lost the connection to the pool (%s: %s); the operation may still "
            "complete: `xenvol list` tells, and the same call with op_id=%s returns its result"
            % (fn, op_id, type(cause).__name__, cause, op_id)
        )
    else:
        text = "%s: lost the connection to the pool (%s: %s)" % (fn, type(cause).__name__, cause)
    return ConnectionFailed(text, "CONNECTION_LOST", {"op_id": op_id} if op_id else {}, host)


def interrupted(fn: str, op_id: str, host: Optional[str], outcome: str) -> Cancelled:
    """What became of an operation interrupted by Ctrl-C and cancelled by its op id."""
    text = {
        "rolled back": "%s cancelled: it stopped and rolled back (op id %s)",
        "failed": "%s interrupted: it failed and rolled back (op id %s)",
        "completed": "%s completed before it could be cancelled (op id %s): `xenvol list` "
        "shows what it did",
        "not rolled back": "%s cancelled, but not all of it could be rolled back (op id %s): "
        "what stands is left for the host's recovery; `xenvol gc` lists it",
        "unknown": "%s interrupted: it may still complete: op id %s, `xenvol list` tells",
    }[outcome] % (fn, op_id)
    return Cancelled(
        text,
        "XENVOL_CANCELLED",
        {"op_id": op_id, "outcome": outcome, "completed": outcome == "completed"},
        host,
    )


def timed_out(
    fn: str, op_id: str, host: Optional[str], cause: object, waited: float
) -> OperationTimedOut:
    return OperationTimedOut(
        "%s: no answer in time (%s); the operation may still complete; attachments() "
        "tells, and the same call with op_id=%s returns its result"
        % (fn, cause or "waited %ds" % waited, op_id),
        "XENVOL_OPERATION_TIMED_OUT",
        {"op_id": op_id},
        host,
    )
