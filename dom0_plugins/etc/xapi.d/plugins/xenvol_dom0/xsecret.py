"""Secret values a call is given, in clear or as XAPI secrets (`..._secret` uuids).

Every secret value is checked exactly as the same password given in clear would be, so that a
client turning a password into a secret first cannot carry what the plugin would refuse
(a newline in a CHAP password is a line of iscsid's configuration), and it is remembered for
scrubbing, so that a XAPI error echoing it is blanked like a clear password.

A secret the client made (tagged `xenvol: client`) stands for a value the caller gave in
clear: its refusal names the field and says what a by-hand call with the clear value would
get, so that the client's conversion never changes which refusal a caller gets."""

import re

import XenAPI

from .check import password_problem
from .errors import INVALID_CONNECTION_INFO, from_xapi, invalid
from .marks import MADE_BY
from .redact import SCRUB, embedded, is_secret_key, is_secret_ref

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple  # noqa: F401

    from .call import Call  # noqa: F401
    from .check import Fields  # noqa: F401

# `password_secret=<uuid>` inside an option string: how the client carries `password=…`.
_OPTION_REF = re.compile(
    r"(?:^|(?<=[\s,]))(?P<name>[A-Za-z][A-Za-z0-9_-]*_secret)=(?P<uuid>[0-9a-fA-F-]{36})(?=$|[\s,])"
)


def value(call, uuid, field, clear=None):
    # type: (Call, str, str, Optional[Tuple[str, str]]) -> str
    """The value of the secret `uuid`, given as `field` (data.auth_password_secret). clear:
    (field, problem prefix) of the clear value a client-made secret stands for."""
    try:
        # One filtered read for the value and the client's tag (a checked uuid).
        found = call.x.secret.get_all_records_where('field "uuid" = "%s"' % uuid.lower())
    except XenAPI.Failure as f:
        raise from_xapi(f, "reading the secret given as %s" % field) from None
    if not found:
        raise invalid(field, "names no XAPI secret", INVALID_CONNECTION_INFO)
    rec = list(found.values())[0]
    text = rec["value"]
    SCRUB.remember(text)
    call.op.known_secrets[uuid] = text  # for the op id's digest (opid.py), never stored
    problem = password_problem(text)
    if problem:
        if clear is not None and rec["other_config"].get(MADE_BY) == "client":
            raise invalid(clear[0], clear[1] + problem, INVALID_CONNECTION_INFO)
        raise invalid(field, "the secret's value %s" % problem, INVALID_CONNECTION_INFO)
    return text


def check_clear(data, volume_type):
    # type: (Fields, str) -> None
    """Secret values given in clear in data (under a secret key, or inside a string) are
    judged as passwords, before any other field."""
    for key in sorted(data.data):
        v = data.data[key]
        if v in (None, ""):
            continue
        if is_secret_key(key):
            problem = password_problem(v)
            if problem:
                raise data.bad(key, problem)
            continue
        for how, password in embedded(volume_type, key, v):
            problem = password_problem(password)
            if problem:
                raise data.bad(key, how + problem)


def check_given(call, data):
    # type: (Call, Fields) -> Dict[str, str]
    """Read and check every secret named in data (a check.Fields): `<key>_secret` keys and
    `<name>_secret=<uuid>` inside option strings; {uuid: value}."""
    values = {}
    for key in sorted(data.data):
        v = data.data[key]
        if v in (None, ""):
            continue
        if is_secret_ref(key):
            # Checked, not used: the driver still has to take it (operations._admit).
            unused = key not in data.used
            uuid = data.uuid(key)
            assert uuid  # v is a non-empty value: uuid() returns it checked, or raises
            if unused:
                data.used.discard(key)
            values[uuid] = value(call, uuid, data.name(key), _clear(data, key))
        elif isinstance(v, str):
            for m in _OPTION_REF.finditer(v):
                if is_secret_ref(m.group("name")):
                    how = "%s= " % m.group("name")[: -len("_secret")]
                    uuid = m.group("uuid").lower()
                    values[uuid] = value(call, uuid, data.name(key), (data.name(key), how))
    return values


def _clear(data, key):
    # type: (Fields, str) -> Tuple[str, str]
    """Where the client found the value of `key` (a `..._secret`): under its own key
    (auth_password -> auth_password_secret), or as the password inside another key's URL or
    export (export -> export_password_secret)."""
    base = key[: -len("_secret")]
    owner = base[: -len("_password")] if base.endswith("_password") else ""
    if owner and owner in data.data and not is_secret_key(owner):
        return data.name(owner), "the password in it "
    return data.name(base), ""
