"""The values of the XAPI secrets a call is given (`..._secret` uuids).

A secret's value is checked exactly as the same password given in clear would be, so that a
client turning a password into a secret first cannot carry what the plugin would refuse
(a newline in a CHAP password is a line of iscsid's configuration), and it is remembered for
scrubbing, so that a XAPI error echoing it is blanked like a clear password."""

import XenAPI

from .check import password_problem
from .errors import INVALID_CONNECTION_INFO, from_xapi, invalid
from .redact import SCRUB, is_secret_ref

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict  # noqa: F401

    from .call import Call  # noqa: F401
    from .check import Fields  # noqa: F401


def value(call, uuid, field):
    # type: (Call, str, str) -> str
    """The value of the secret `uuid`, given as `field` (data.auth_password_secret)."""
    try:
        ref = call.x.secret.get_by_uuid(uuid)
        text = call.x.secret.get_value(ref)
    except XenAPI.Failure as f:
        if f.details[0] in ("UUID_INVALID", "HANDLE_INVALID"):
            raise invalid(field, "names no XAPI secret", INVALID_CONNECTION_INFO) from None
        raise from_xapi(f, "reading the secret given as %s" % field) from None
    SCRUB.remember(text)
    call.op.known_secrets[uuid] = text  # for the op id's digest (opid.py), never stored
    problem = password_problem(text)
    if problem:
        raise invalid(field, "the secret's value %s" % problem, INVALID_CONNECTION_INFO)
    return text


def check_given(call, data):
    # type: (Call, Fields) -> Dict[str, str]
    """Read and check every secret named in data (a check.Fields); {uuid: value}."""
    values = {}
    for key in sorted(data.data):
        v = data.data[key]
        if is_secret_ref(key) and v not in (None, ""):
            uuid = data.uuid(key)
            assert uuid  # v is a non-empty value: uuid() returns it checked, or raises
            values[uuid] = value(call, uuid, data.name(key))
    return values
