"""Keeping secrets out of logs and errors.

Which keys hold secrets (one list, documented in docs/plugin-api.md, the same in the client's
xenvol.secrets): a key whose last `_`/`-` separated word is password, passwd, secret,
keyring, token or key, or whose name ends in password or passwd (chappassword). A key
`<secret key>_secret` (auth_password_secret) holds the uuid of a XAPI secret instead.

Secrets inside a string are secret-bearing too, whatever the driver type, served or not
(embedded()): `password=…` (or mount.cifs's `pass=…`) in an option string, the password of a
URL or export (`smb://user:pw@host/share`, `user:pw@host:/path`), and Virtuozzo Storage's
export `[MDS list:/]cluster[:password]` (os-brick remotefs.py VZStorageRemoteFSClient).

Two layers: values under secret keys are masked wherever a structure is logged, and every
secret value the call has seen (given in clear, or read from a XAPI secret) is scrubbed from
any text that leaves the plugin, as a whole token only, so that no ordinary word is mangled."""

import json
import re

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Pattern, Set, Tuple  # noqa: F401

MASK = "***"
SECRET_WORDS = ("password", "passwd", "secret", "keyring", "token", "key")
_WORDS = re.compile(r"[_-]")
# Scrubbing a value shorter than this would blank out parts of ordinary text.
MIN_SCRUB = 4
_TOKEN_CHAR = "A-Za-z0-9"


def is_secret_ref(key):
    # type: (object) -> bool
    """`auth_password_secret`: the uuid of a XAPI secret, not a secret itself."""
    key = str(key)
    return key.lower().endswith("_secret") and _names_secret(key[: -len("_secret")])


def is_secret_key(key):
    # type: (object) -> bool
    """`auth_password`, `chappassword`, `keyring`, `client_token` hold secret values."""
    key = str(key)
    return _names_secret(key) and not is_secret_ref(key)


def _names_secret(key):
    # type: (str) -> bool
    low = key.lower()
    return bool(low) and (
        _WORDS.split(low)[-1] in SECRET_WORDS or low.endswith(("password", "passwd"))
    )


# The client's xenvol.secrets option and URL patterns, so both find the same values.
_OPTION = re.compile(r"(?:^|(?<=[\s,]))(?P<name>[A-Za-z][A-Za-z0-9_-]*)=(?P<value>[^,\s]*)")
_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?(//)?(?P<user>[^/@:\s]*)"
    r":(?P<password>[^/@\s]+)@"
)
# os-brick remotefs.py VZStorageRemoteFSClient._do_mount: [MDS1[,MDS2],...:/]<CLUSTER>[:PASSWORD],
# found with re.search as os-brick does (whatever surrounds it).
_VZ_EXPORT = re.compile(r"(?:(\S+):/)?([a-zA-Z0-9_-]+)(?::(?P<password>\S+))?")
# Keys whose whole value follows a type's own secret-bearing format.
_EXPORT_FORMATS = {("vzstorage", "export"): _VZ_EXPORT}


def is_option_secret(name):
    # type: (str) -> bool
    """An option `name=value` whose value is a secret (mount.cifs also takes `pass=`)."""
    return is_secret_key(name) or name.lower() == "pass"


def embedded(volume_type, key, value):
    # type: (str, object, object) -> List[Tuple[str, str]]
    """[(how, password)] of the secrets inside one string value of `data`: how is "name= "
    for an option, "the password in it " for a URL's or an export's password."""
    if not isinstance(value, str):
        return []
    fmt = _EXPORT_FORMATS.get((str(volume_type).lower(), str(key)))
    m = fmt.search(value) if fmt else _USERINFO.match(value)
    if m and m.group("password"):
        return [("the password in it ", m.group("password"))]
    return [
        ("%s= " % o.group("name"), o.group("value"))
        for o in _OPTION.finditer(value)
        if o.group("value") and is_option_secret(o.group("name"))
    ]


def embedded_in(info):
    # type: (Any) -> List[str]
    """Every secret inside a string anywhere in a connection_info."""
    volume_type = info.get("driver_volume_type", "") if isinstance(info, dict) else ""
    found = []  # type: List[str]

    def walk(key, obj):
        # type: (object, Any) -> None
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, v)
        elif isinstance(obj, list):
            for v in obj:
                walk(key, v)
        else:
            found.extend(pw for _how, pw in embedded(volume_type, key, obj))

    walk("", info)
    return found


_PATH = re.compile(r"(?<![\w.:/-])/(?:[\w.@+-]+/)*[\w.@+-]+")


def without_paths(text):
    # type: (object) -> str
    """An unexpected exception's text without dom0 file paths (an error leaves dom0)."""
    return _PATH.sub("<path>", str(text))


def mask(obj):
    # type: (Any) -> Any
    if isinstance(obj, dict):
        return dict((k, MASK if is_secret_key(k) and v else mask(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [mask(v) for v in obj]
    return obj


class Scrubber:
    """Remembers the secret values of one call and blanks them out of text."""

    def __init__(self):
        # type: () -> None
        self.values = set()  # type: Set[str]
        self._pattern = None  # type: Optional[Pattern[str]]

    def remember(self, value):
        # type: (object) -> None
        if isinstance(value, str) and len(value) >= MIN_SCRUB:
            # also as it appears inside a JSON string (quotes, backslashes escaped)
            for form in (value, json.dumps(value)[1:-1]):
                if form not in self.values:
                    self.values.add(form)
                    self._pattern = None

    def remember_in(self, obj, inside=True):
        # type: (Any, bool) -> None
        """Values under secret keys, and with `inside` (a parsed connection_info) every secret
        inside a string."""
        if inside:
            for value in embedded_in(obj):
                self.remember(value)
        if isinstance(obj, dict):
            for k, v in obj.items():
                if is_secret_key(k):
                    self.remember(v)
                else:
                    self.remember_in(v, False)
        elif isinstance(obj, list):
            for v in obj:
                self.remember_in(v, False)

    def __call__(self, text):
        # type: (object) -> str
        text = str(text)
        if not self.values:
            return text
        if self._pattern is None:
            # Whole tokens: a value is masked where no letter or digit touches it, so the
            # password "plug" leaves "plugging the SR" alone but not "password=plug,".
            alternatives = "|".join(
                re.escape(v) for v in sorted(self.values, key=len, reverse=True)
            )
            self._pattern = re.compile(
                "(?<![%s])(?:%s)(?![%s])" % (_TOKEN_CHAR, alternatives, _TOKEN_CHAR)
            )
        return self._pattern.sub(MASK, text)


SCRUB = Scrubber()
