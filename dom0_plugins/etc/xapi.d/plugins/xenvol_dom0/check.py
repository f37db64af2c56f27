"""Validation of caller input into typed values, with errors that name the field."""

import ipaddress
import json
import posixpath
import re

from .errors import INVALID_ARGUMENT, INVALID_CONNECTION_INFO, invalid
from .redact import is_secret_ref

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Container, Dict, List, Optional, Sequence, Set, Tuple  # noqa: F401

    from .errors import XenvolError  # noqa: F401

MAX_STRING = 1024
# connection_info as sent: XAPI passes plugin arguments on dom0's command line, where one
# argument may be at most 128 KiB (Linux MAX_ARG_STRLEN); the client checks the same limit.
MAX_DOCUMENT = 64 * 1024
MAX_PASSWORD = 256
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z"
)
_IQN = re.compile(
    r"^(iqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9.:_-]+)?"
    r"|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)\Z"
)
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f]*\Z")
# A password goes into iscsid's and mount's configuration: no line or field separators of any
# kind (C0, DEL, C1, Unicode line/paragraph separators).
_PASSWORD_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.:/+-]*\Z")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}\Z"
)


class Fields:
    """Typed access to one dict of caller input; `where` prefixes field names in errors."""

    def __init__(self, data, where, code=INVALID_CONNECTION_INFO):
        # type: (Any, str, str) -> None
        if not isinstance(data, dict):
            raise invalid(where or "input", "must be an object", code)
        self.data = data
        self.where = where
        self.code = code
        self.used = set()  # type: Set[str]
        # The whole connection_info, when data is its `data` (operations.parse_info).
        self.envelope = None  # type: Any

    def name(self, key):
        # type: (str) -> str
        return "%s.%s" % (self.where, key) if self.where else key

    def bad(self, key, problem):
        # type: (str, str) -> XenvolError
        return invalid(self.name(key), problem, self.code)

    def has(self, key):
        # type: (str) -> bool
        return self.data.get(key) not in (None, "")

    def raw(self, key):
        # type: (str) -> Any
        self.used.add(key)
        return self.data.get(key)

    def string(self, key, required=True, default=None, max_len=MAX_STRING):
        # type: (str, bool, Optional[str], int) -> Any
        v = self.raw(key)
        if v is None or v == "":
            if required:
                raise self.bad(key, "is required")
            return default
        if not isinstance(v, str):
            raise self.bad(key, "must be a string, not %s" % _kind(v))
        if len(v) > max_len:
            raise self.bad(key, "is too long (%d characters, at most %d)" % (len(v), max_len))
        if not _SAFE_TEXT.match(v):
            raise self.bad(key, "contains control characters")
        return v

    def integer(self, key, required=True, default=None, low=None, high=None):
        # type: (str, bool, Optional[int], Optional[int], Optional[int]) -> Any
        v = self.raw(key)
        if v is None or v == "":
            if required:
                raise self.bad(key, "is required")
            return default
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise self.bad(key, "must be an integer, not %s" % _kind(v))
        if isinstance(v, str):
            if not re.match(r"^[0-9]{1,10}$", v.strip()):
                raise self.bad(key, "must be a non-negative integer, not %r" % v[:40])
            v = int(v.strip())
        if low is not None and v < low:
            raise self.bad(key, "must be at least %d (got %d)" % (low, v))
        if high is not None and v > high:
            raise self.bad(key, "must be at most %d (got %d)" % (high, v))
        return v

    def boolean(self, key, default):
        # type: (str, bool) -> bool
        v = self.raw(key)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
            return v.lower() in ("true", "yes", "1")
        raise self.bad(key, "must be true or false")

    def choice(self, key, choices, default=None):
        # type: (str, Sequence[str], Optional[str]) -> str
        v = self.string(key, required=default is None, default=default, max_len=64)
        if v.lower() not in choices:
            raise self.bad(key, "must be one of %s (got %r)" % (", ".join(choices), v))
        return v.lower()

    def uuid(self, key, required=True):
        # type: (str, bool) -> Optional[str]
        v = self.string(key, required=required, max_len=36)
        if v is not None and not _UUID.match(v):
            raise self.bad(key, "is not a uuid")
        return v.lower() if v else v

    def iqn(self, key, value=None, required=True):
        # type: (str, Optional[str], bool) -> Optional[str]
        v = self.string(key, required=required, max_len=223) if value is None else value
        if isinstance(v, str) and len(v) > 223:
            # RFC 3720 3.2.6.1: an iSCSI name is at most 223 bytes.
            raise self.bad(key, "is too long (%d characters, at most 223)" % len(v))
        if v is not None and not _IQN.match(v):
            raise self.bad(key, "is not an iSCSI name (iqn.YYYY-MM.domain[:id], eui. or naa.)")
        return v

    def string_list(self, key, required=False):
        # type: (str, bool) -> Optional[List[Any]]
        v = self.raw(key)
        if v is None:
            if required:
                raise self.bad(key, "is required")
            return None
        if not isinstance(v, list) or not v:
            raise self.bad(key, "must be a non-empty list")
        if len(v) > 64:
            raise self.bad(key, "has too many entries (%d, at most 64)" % len(v))
        return v

    def path(self, key, required=True):
        # type: (str, bool) -> Optional[str]
        v = self.string(key, required=required, max_len=512)
        if v is None:
            return None
        if not v.startswith("/"):
            raise self.bad(key, "must be an absolute path")
        if ".." in v.split("/") or posixpath.normpath(v) != v.rstrip("/") and v != "/":
            raise self.bad(key, "must be a plain absolute path (no '..', no '//')")
        return posixpath.normpath(v)

    def password(self, key):
        # type: (str) -> str
        """A password given in clear, checked as every secret value is (check.password)."""
        v = self.raw(key)
        if v is None or v == "":
            raise self.bad(key, "is required")
        problem = password_problem(v)
        if problem:
            raise self.bad(key, problem)
        return v

    def mount_options(self, key, allowed):
        # type: (str, Dict[str, bool]) -> List[Tuple[str, Optional[str]]]
        """Mount options as Cinder writes them ("-o vers=4.1,proto=tcp", or a bare comma list)
        -> [(name, value or None)], every name in `allowed` (name -> True when it takes a
        value)."""
        v = self.string(key, required=False, max_len=512)
        return [] if v is None else mount_options(v, allowed, self.name(key))

    def reject_unknown(self, allowed):
        # type: (Container[str]) -> None
        for key in self.data:
            if key not in allowed:
                raise self.bad(key, "is not a known argument")


def is_uuid(text):
    # type: (object) -> bool
    return isinstance(text, str) and bool(_UUID.match(text))


def password_problem(value):
    # type: (object) -> Optional[str]
    """Why a password (clear, or a XAPI secret's value) is unusable, or None. The client's
    xenvol.secrets.password_problem applies the same rules."""
    if not isinstance(value, str):
        return "must be a string, not %s" % _kind(value)
    if not value:
        return "is empty"
    if len(value) > MAX_PASSWORD:
        return "is too long (%d characters, at most %d)" % (len(value), MAX_PASSWORD)
    if _PASSWORD_BAD.search(value):
        return "contains control or line-separator characters"
    return None


def mount_options(text, allowed, field):
    # type: (str, Dict[str, bool], str) -> List[Tuple[str, Optional[str]]]
    words = text.split()
    items = []  # type: List[str]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-o":
            if i + 1 == len(words):
                raise invalid(field, "'-o' is not followed by options")
            word = words[i + 1]
            i += 1
        elif word.startswith("-o") and len(word) > 2:
            word = word[2:]
        elif word.startswith("-"):
            raise invalid(field, "only '-o' options are accepted (got %r)" % word[:32])
        items.extend(p for p in word.split(",") if p)
        i += 1
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if name not in allowed:
            # The client's password_secret=<uuid> stands for password=…: named as given.
            shown = name[: -len("_secret")] if is_secret_ref(name) else name
            raise invalid(
                field,
                "%r is not an allowed mount option (allowed: %s)"
                % (shown[:32], ", ".join(sorted(allowed))),
            )
        if bool(sep) != allowed[name]:
            raise invalid(
                field,
                "mount option %r %s"
                % (name, "needs a value" if allowed[name] else "takes no value"),
            )
        if sep and (not value or not _OPTION_VALUE.match(value)):
            raise invalid(field, "mount option %r has a value with characters not allowed" % name)
        out.append((name, value if sep else None))
    return out


def no_control_characters(obj, where):
    # type: (Any, str) -> None
    """Control characters inside any string (key or value) of a parsed JSON document are
    refused; JSON whitespace between tokens (a pretty-printed file) is not a string."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not _SAFE_TEXT.match(k):
                raise invalid(where, "has a key with control characters")
            # data's fields are named data.x, as Fields names them
            name = "data" if (where, k) == ("connection_info", "data") else "%s.%s" % (where, k)
            no_control_characters(v, name)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            no_control_characters(v, "%s[%d]" % (where, i))
    elif isinstance(obj, str) and not _SAFE_TEXT.match(obj):
        raise invalid(where, "contains control characters")


def _kind(v):
    # type: (object) -> str
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
        str: "a string",
    }.get(type(v), type(v).__name__)


def host_port(value, field, default_port=3260, bare_v6_port=True):
    # type: (str, str, int, bool) -> Tuple[str, int]
    """'host', 'host:port', '[v6]', '[v6]:port' -> (host, port); host checked to be an IP
    address or a DNS name. With bare_v6_port (portals), an unbracketed IPv6 address followed
    by :digits, as PowerStore writes `fd00::31:3260`, splits on the last colon when what
    precedes it is an IPv6 address of its own; `fd00::31` and `::1` stay whole."""
    v = value.strip()
    port = default_port
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise invalid(field, "has an unclosed '[' in %r" % v[:64])
        host, rest = v[1:end], v[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise invalid(field, "has text after the bracketed address")
            port = _port(rest[1:], field)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(field, "%r is not an IPv6 address" % host[:64]) from None
        return host, port
    if v.count(":") > 1:
        head, _sep, tail = v.rpartition(":")
        if bare_v6_port and tail.isdigit() and _is_v6(head):
            return head, _port(tail, field)
        if not _is_v6(v):
            raise invalid(field, "is not host:port (write IPv6 addresses as [addr]:port)")
        return v, port
    host, sep, p = v.partition(":")
    if sep:
        port = _port(p, field)
    if not _HOSTNAME.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise invalid(field, "%r is not an IP address or host name" % host[:64]) from None
    return host, port


def _is_v6(text):
    # type: (str) -> bool
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


def _port(text, field):
    # type: (str, str) -> int
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise invalid(field, "port must be a number from 1 to 65535 (got %r)" % text[:16])
    return int(text)


def too_large(text, field, code=INVALID_ARGUMENT):
    # type: (str, str, str) -> Optional[XenvolError]
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT:
        return invalid(
            field,
            "is too large (%d bytes, at most %d): XAPI passes it on dom0's "
            "command line" % (size, MAX_DOCUMENT),
            code,
        )
    return None


def parse_json(text, field, code=INVALID_ARGUMENT):
    # type: (str, str, str) -> Any
    error = too_large(text, field)
    if error:
        raise error
    try:
        return json.loads(text)
    except ValueError as e:
        raise invalid(field, "is not valid JSON (%s)" % str(e).split(":")[0], code) from None
