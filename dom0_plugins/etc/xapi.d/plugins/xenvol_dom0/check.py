"""Validation of caller input into typed values, with errors that name the field."""
import ipaddress
import json
import posixpath
import re

from .errors import INVALID_ARGUMENT, INVALID_CONNECTION_INFO, invalid

MAX_STRING = 1024
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_IQN = re.compile(r"^(iqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9.:_-]+)?"
                  r"|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$")
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f]*$")
_OPTIONS = re.compile(r"^[A-Za-z0-9_.,=:/-]*$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")


class Fields(object):
    """Typed access to one dict of caller input; `where` prefixes field names in errors."""

    def __init__(self, data, where, code=INVALID_CONNECTION_INFO):
        if not isinstance(data, dict):
            raise invalid(where or "input", "must be an object", code)
        self.data = data
        self.where = where
        self.code = code
        self.used = set()

    def name(self, key):
        return "%s.%s" % (self.where, key) if self.where else key

    def bad(self, key, problem):
        return invalid(self.name(key), problem, self.code)

    def has(self, key):
        return self.data.get(key) not in (None, "")

    def raw(self, key):
        self.used.add(key)
        return self.data.get(key)

    def string(self, key, required=True, default=None, max_len=MAX_STRING):
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
        v = self.raw(key)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
            return v.lower() in ("true", "yes", "1")
        raise self.bad(key, "must be true or false")

    def choice(self, key, choices, default=None):
        v = self.string(key, required=default is None, default=default, max_len=64)
        if v.lower() not in choices:
            raise self.bad(key, "must be one of %s (got %r)" % (", ".join(choices), v))
        return v.lower()

    def uuid(self, key, required=True):
        v = self.string(key, required=required, max_len=36)
        if v is not None and not _UUID.match(v):
            raise self.bad(key, "is not a uuid")
        return v.lower() if v else v

    def iqn(self, key, value=None, required=True):
        v = self.string(key, required=required, max_len=223) if value is None else value
        if v is not None and not _IQN.match(v):
            raise self.bad(key, "is not an iSCSI name (iqn.YYYY-MM.domain[:id], eui. or naa.)")
        return v

    def string_list(self, key, required=False):
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
        v = self.string(key, required=required, max_len=512)
        if v is None:
            return None
        if not v.startswith("/"):
            raise self.bad(key, "must be an absolute path")
        if ".." in v.split("/") or posixpath.normpath(v) != v.rstrip("/") and v != "/":
            raise self.bad(key, "must be a plain absolute path (no '..', no '//')")
        return posixpath.normpath(v)

    def options(self, key):
        v = self.string(key, required=False, max_len=256)
        if v is not None and not _OPTIONS.match(v):
            raise self.bad(key, "has characters not allowed in mount options")
        return v

    def reject_unknown(self, allowed):
        for key in self.data:
            if key not in allowed:
                raise self.bad(key, "is not a known argument")


def _kind(v):
    return {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "an object", str: "a string"}.get(type(v), type(v).__name__)


def host_port(value, field, default_port=3260):
    """'host', 'host:port', '[v6]', '[v6]:port' -> (host, port); host checked to be an IP
    address or a DNS name."""
    v = value.strip()
    port = default_port
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise invalid(field, "has an unclosed '[' in %r" % v[:64])
        host, rest = v[1:end], v[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise invalid(field, "has text after the bracketed address")
            port = _port(rest[1:], field)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(field, "%r is not an IPv6 address" % host[:64])
        return host, port
    if v.count(":") > 1:
        try:
            ipaddress.IPv6Address(v)
        except ValueError:
            raise invalid(field, "is not host:port (write IPv6 addresses as [addr]:port)")
        return v, port
    host, sep, p = v.partition(":")
    if sep:
        port = _port(p, field)
    if not _HOSTNAME.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise invalid(field, "%r is not an IP address or host name" % host[:64])
    return host, port


def _port(text, field):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise invalid(field, "port must be a number from 1 to 65535 (got %r)" % text[:16])
    return int(text)


def parse_json(text, field, code=INVALID_ARGUMENT):
    if len(text) > 64 * 1024:
        raise invalid(field, "is too large (%d bytes, at most 65536)" % len(text), code)
    try:
        return json.loads(text)
    except ValueError as e:
        raise invalid(field, "is not valid JSON (%s)" % str(e).split(":")[0], code)
