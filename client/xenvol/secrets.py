"""What the client keeps out of dom0's command line: every secret-bearing value of a
connection_info becomes a XAPI secret, and only its uuid travels.

Secret-bearing (the same list as the plugin's xenvol_dom0/redact.py, docs/plugin-api.md):
- a key whose last `_`/`-` separated word is password, passwd, secret, keyring, token or key,
  or whose name ends in password or passwd (chappassword) -> `<key>_secret`: <uuid>;
- `password=...` (the other words above, and mount.cifs's `pass=`) inside an option string ->
  `password_secret=<uuid>` (`<name>_secret=<uuid>` for the other words);
- the password of a URL or export (`smb://user:pw@host/share`, `user:pw@host:/path`, and
  Virtuozzo Storage's `export` `[MDS list:/]cluster[:password]`) -> the value without it, and
  `<key>_password_secret`: <uuid> beside it.
`<secret key>_secret` already holds a secret's uuid and is left alone.

The plugin judges the values (it reads the secrets in dom0 and refuses a bad one naming the
field the caller gave, with the words it uses for the value in clear), after it has judged the
volume type: so the conversion never changes which refusal a caller gets. Only a value XAPI
cannot carry in a secret (not a string, or characters XML-RPC cannot transport) is refused
here, with the plugin's words. stash() makes the secrets through the caller's session, drop()
destroys them."""

import copy
import json
import re
import uuid as uuidlib
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Pattern, Set, Tuple

import XenAPI

from . import errors

# make(value, field) -> the uuid that replaces it; error(field, problem) -> the exception.
Maker = Callable[[str, str], str]
ErrorFor = Callable[[str, str], Exception]

SECRET_WORDS = ("password", "passwd", "secret", "keyring", "token", "key")
MAX_PASSWORD = 256
# connection_info as sent; the plugin's check.MAX_DOCUMENT.
MAX_DOCUMENT = 64 * 1024
# xapi passes the call to the plugin as one argv string, XML-escaped (xen-api
# ocaml/xapi/xapi_plugins.ml call_plugin); Linux takes at most 128 KiB per argument
# (MAX_ARG_STRLEN): the document, escaped, keeps a margin for the call's other arguments.
MAX_ESCAPED = 120 * 1024
MIN_SCRUB = 4
_WORDS = re.compile(r"[_-]")
_PASSWORD_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_OPTION = re.compile(r"(?:^|(?<=[\s,]))(?P<name>[A-Za-z][A-Za-z0-9_-]*)=(?P<value>[^,\s]*)")
_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?(//)?(?P<user>[^/@:\s]*)"
    r":(?P<password>[^/@\s]+)@"
)
# os-brick remotefs.py VZStorageRemoteFSClient._do_mount: [MDS1[,MDS2],...:/]<CLUSTER>[:PASSWORD],
# found with re.search as os-brick does (whatever surrounds it).
_VZ_EXPORT = re.compile(r"(?:(\S+):/)?([a-zA-Z0-9_-]+)(?::(?P<password>\S+))?")
_EXPORT_FORMATS = {("vzstorage", "export"): _VZ_EXPORT}
# What XML-RPC cannot carry in a string (XML 1.0 Char), so no secret can hold it.
_UNCARRIABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    str: "a string",
}


def is_secret_ref(key: object) -> bool:
    key = str(key)
    return key.lower().endswith("_secret") and _names_secret(key[: -len("_secret")])


def is_secret_key(key: object) -> bool:
    key = str(key)
    return _names_secret(key) and not is_secret_ref(key)


def _names_secret(key: str) -> bool:
    low = key.lower()
    return bool(low) and (
        _WORDS.split(low)[-1] in SECRET_WORDS or low.endswith(("password", "passwd"))
    )


def password_problem(value: object) -> Optional[str]:
    """The plugin's check.password_problem, rule for rule."""
    if not isinstance(value, str):
        return "must be a string, not %s" % _KINDS.get(type(value), type(value).__name__)
    if not value:
        return "is empty"
    if len(value) > MAX_PASSWORD:
        return "is too long (%d characters, at most %d)" % (len(value), MAX_PASSWORD)
    if _PASSWORD_BAD.search(value):
        return "contains control or line-separator characters"
    return None


def is_option_secret(name: str) -> bool:
    """An option `name=value` whose value is a secret (mount.cifs also takes `pass=`)."""
    return is_secret_key(name) or name.lower() == "pass"


def option_secrets(text: str) -> List[Tuple[int, int, str, str]]:
    """[(start, end, name, value)] of the secret options in an option string."""
    return [
        (m.start("name"), m.end("value"), m.group("name"), m.group("value"))
        for m in _OPTION.finditer(text)
        if m.group("value") and is_option_secret(m.group("name"))
    ]


def url_password(
    text: str, volume_type: str = "", key: object = ""
) -> Optional[Tuple[int, int, str]]:
    """(start, end, password) of a URL's or export's password (with the ':' before it), or
    None; `key` of a `volume_type` with a format of its own (vzstorage's export) uses it."""
    fmt = _EXPORT_FORMATS.get((volume_type.lower(), str(key)))
    m = fmt.search(text) if fmt else _USERINFO.match(text)
    if not m or not m.group("password"):
        return None
    return m.start("password") - 1, m.end("password"), m.group("password")


def _unusable(value: object) -> Optional[str]:
    """Why a secret value cannot even be made into a XAPI secret, in the plugin's words."""
    if not isinstance(value, str) or _UNCARRIABLE.search(value):
        return password_problem(value)
    return None


class Scrub:
    """Blanks secret values out of text, as whole tokens only (the plugin's Scrubber)."""

    pattern: Optional[Pattern[str]]

    def __init__(self, values: Iterable[object]) -> None:
        forms: Set[str] = set()
        for v in values:
            if isinstance(v, str) and len(v) >= MIN_SCRUB:
                forms.update((v, json.dumps(v)[1:-1]))  # as is, and inside a JSON string
        ordered = sorted(forms, key=len, reverse=True)
        self.pattern = (
            re.compile(
                "(?<![A-Za-z0-9])(?:%s)(?![A-Za-z0-9])" % "|".join(re.escape(v) for v in ordered)
            )
            if ordered
            else None
        )

    def __call__(self, text: str) -> str:
        return self.pattern.sub("***", text) if self.pattern else text


def rewrite(info: Any, make: Maker, error: ErrorFor) -> Any:
    """connection_info with every secret-bearing value replaced by make(value) (a secret's
    uuid); error(field, problem) builds the exception for an unusable one."""
    volume_type = info.get("driver_volume_type") if isinstance(info, dict) else None
    return _rewrite(info, "connection_info", make, error, str(volume_type or ""))


def renest(info: Any) -> Any:
    """The attachments API's flat connection_info (data keys beside driver_volume_type) in
    the classic shape, as nova's cinder.py _translate_attachment_ref rebuilds it."""
    if isinstance(info, dict) and "data" not in info and "driver_volume_type" in info:
        data = dict(
            (k, v) for k, v in info.items() if k not in ("driver_volume_type", "attachment_id")
        )
        return {"driver_volume_type": info["driver_volume_type"], "data": data}
    return info


def _field(where: str, key: object) -> str:
    return "data" if (where, key) == ("connection_info", "data") else "%s.%s" % (where, key)


def _rewrite(obj: Any, where: str, make: Maker, error: ErrorFor, vtype: str) -> Any:
    if isinstance(obj, list):
        out: List[Any] = []
        for i, v in enumerate(obj):
            field = "%s[%d]" % (where, i)
            if isinstance(v, str):
                if url_password(v):
                    raise error(
                        field,
                        "a password inside a list item cannot be kept out of "
                        "dom0's command line; give it as a key of its own",
                    )
                v = _options(v, field, make, error)
            out.append(_rewrite(v, field, make, error, vtype))
        return out
    if not isinstance(obj, dict):
        return obj
    rewritten: Dict[Any, Any] = {}
    for key in sorted(obj, key=str):
        value = obj[key]
        field = _field(where, key)
        if is_secret_key(key) and value not in (None, ""):
            problem = _unusable(value)
            if problem:
                raise error(field, problem)
            if obj.get(key + "_secret") not in (None, ""):
                raise error(field, "give %s or %s_secret, not both" % (key, key))
            rewritten[key + "_secret"] = make(value, field)
        elif isinstance(value, str):
            found = url_password(value, vtype if where == "data" else "", key)
            if found:
                start, end, password = found
                problem = _unusable(password)
                if problem:
                    raise error(field, "the password in it " + problem)
                rewritten[key + "_password_secret"] = make(password, field)
                value = value[:start] + value[end:]
            rewritten[key] = _options(value, field, make, error)
        else:
            rewritten[key] = _rewrite(value, field, make, error, vtype)
    return rewritten


def _options(text: str, field: str, make: Maker, error: ErrorFor) -> str:
    for start, end, name, value in reversed(option_secrets(text)):
        problem = _unusable(value)
        if problem:
            raise error(field, "%s= %s" % (name, problem))
        ref = "password_secret" if name.lower() == "pass" else name + "_secret"
        text = text[:start] + "%s=%s" % (ref, make(value, field)) + text[end:]
    return text


INVALID_CONNECTION_INFO = "XENVOL_INVALID_CONNECTION_INFO"


def document_too_large(text: str) -> Optional[str]:
    """Why connection_info as sent is too large, in the plugin's words (check.too_large), or
    None. Beyond the plugin's limit, what xapi would pass on dom0's command line: a larger
    argument is never exec'd, and the plugin could not answer."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT:
        return "is too large (%d bytes, at most %d): XAPI passes it on dom0's command line" % (
            size,
            MAX_DOCUMENT,
        )
    # Xml.to_string's escapes (ocaml-rpc xmlrpc.ml): & < > " grow to &amp; &lt; &gt; &quot;
    escaped = size + sum(text.count(c) * n for c, n in (("&", 4), ("<", 3), (">", 3), ('"', 5)))
    if escaped > MAX_ESCAPED:
        return (
            "is too large as XAPI passes it on dom0's command line (%d bytes XML-escaped, at "
            "most %d)" % (escaped, MAX_ESCAPED)
        )
    return None


class Stashed(NamedTuple):
    info: Dict[str, Any]  # connection_info with secrets' uuids in place of the values
    created: List[str]  # the refs of every secret made
    leftover: List[str]  # those the plugin does not consume: the client destroys them
    scrub: Scrub  # blanks the values out of error text


def stash(x: Any, connection_info: object, tags: Optional[Dict[str, str]] = None) -> Stashed:
    """connection_info re-nested if flat, with every secret-bearing value replaced by a XAPI
    secret made through the caller's session x (session.xenapi); only its uuid travels to
    dom0. Passwords are checked as the plugin checks them first, and the document's size
    against the plugin's limit, before any secret exists."""
    if not isinstance(connection_info, dict):
        raise errors.InvalidConnectionInfo(
            "connection_info: must be an object",
            INVALID_CONNECTION_INFO,
            details={"field": "connection_info"},
        )
    info = renest(copy.deepcopy(connection_info))

    def error(field: str, problem: str) -> Exception:
        return errors.InvalidConnectionInfo(
            "%s: %s" % (field, problem), INVALID_CONNECTION_INFO, details={"field": field}
        )

    dry = rewrite(info, lambda value, field: "0" * 8 + "-0000" * 3 + "-" + "0" * 12, error)
    too_large = document_too_large(json.dumps(dry))
    if too_large:
        raise errors.InvalidArgument(
            "connection_info: %s" % too_large,
            "XENVOL_INVALID_ARGUMENT",
            details={"field": "connection_info"},
        )
    created: Dict[str, str] = {}
    by_value: Dict[str, str] = {}

    def make(value: str, field: str) -> str:
        # One secret per distinct value, so equal passwords stay equal. secret.introduce
        # with a uuid of our own (xen-api datamodel.ml Secret.introduce, _R_POOL_OP;
        # xapi_secret.ml create is introduce with a fresh uuid): one round trip, where
        # create then get_uuid would be two.
        if value not in by_value:
            uuid = str(uuidlib.uuid4())
            try:
                created[uuid] = str(x.secret.introduce(uuid, value, tags or {}))
            except XenAPI.Failure as f:
                raise errors.from_failure(f.details) from None
            by_value[value] = uuid
        return by_value[value]

    try:
        info = rewrite(info, make, error)
    except Exception:
        drop(x, created.values())
        raise
    # The plugin destroys what it consumes (data's *password_secret, call.py
    # consume_secrets) when its call ends; the client destroys the rest.
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    consumed = set(v for k, v in data.items() if str(k).endswith("password_secret"))
    leftover = [ref for uuid, ref in created.items() if uuid not in consumed]
    return Stashed(info, list(created.values()), leftover, Scrub(list(by_value)))


def drop(x: Any, refs: Iterable[str]) -> None:
    """Destroy secrets we made. xapi copied into a PBD's own secrets whatever PBD.create
    took (xen-api ocaml/xapi/xapi_pbd.ml create, Xapi_secret.duplicate_passwds)."""
    for ref in refs:
        try:
            x.secret.destroy(ref)
        except (XenAPI.Failure, OSError):
            pass
