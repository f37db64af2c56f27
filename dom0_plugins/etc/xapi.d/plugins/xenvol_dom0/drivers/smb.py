"""`smbfs` / `smb`: a VHD on XenServer's SMB SR, <share>/<sr_uuid>/<vdi_uuid>.vhd.

The SR's device_config (sm SMBSR.py): `server` = \\\\host\\share, `username` (DOMAIN\\user
allowed), `password` -> `password_secret`: the only credentials it takes (sm cifutils.py
getCIFCredentials). It mounts with its own fixed options (SMBSR.getMountOptions: cache=loose,
vers=3.0, actimeo=0, the domain, guest without credentials), so a different SMB version or port
is refused and any other option Cinder's `options` carries is listed in the result's `ignored`;
credentials inside `options` ("-o username=…,password=…", or the client's
password_secret=<uuid>) become the PBD's. Cinder's smbfs shape (`export` + `name`, a
`volume-<id>` file in the share root) maps onto it only when the volume is laid out as that SR
expects: sr_uuid and vdi_uuid are required; a format other than VHD is refused first."""

import re

from ..check import host_port, is_uuid, password_problem
from ..redact import SCRUB, is_secret_ref
from .base import Config
from .filebased import SharedFileDriver

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Tuple  # noqa: F401

_SHARE = re.compile(r"^[A-Za-z0-9_.$ -]{1,80}$")
_USER = re.compile(r"^[A-Za-z0-9_.@ -]{1,104}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# mount.cifs's names of what SMBSR takes from device_config.
_CREDENTIALS = {
    "username": "username",
    "user": "username",
    "password": "password",
    "pass": "password",
    "domain": "domain",
    "dom": "domain",
    "workgroup": "domain",
}
_FIXED = "cache=loose,vers=3.0,actimeo=0 and the credentials (SMBSR.getMountOptions)"


class SMBDriver(SharedFileDriver):
    volume_types = ("smbfs", "smb")
    sr_type = "smb"
    sr_name, root, cinder = "XenServer's SMB SR", "<share>", "smbfs"

    def validate(self, d):
        self.refuse_other_layouts(d)
        opts, ignored = _options(d)
        key = "export" if d.has("export") else "server"
        server = _unc(d, key)
        vers = d.string("smb_version", required=False, max_len=8) or opts.get("vers")
        if vers is not None and vers not in ("3", "3.0"):
            raise d.bad(
                "smb_version" if d.has("smb_version") else "options",
                "XenServer's SMB SR always mounts with vers=3.0 (SMBSR.getMountOptions); "
                "SMB %s cannot be chosen" % vers[:8],
            )
        user = d.string("username", required=False, max_len=170) or opts.get("username")
        domain = d.string("domain", required=False, max_len=64) or opts.get("domain")
        if user and "\\" in user:
            if domain:
                raise d.bad("domain", "is given twice (domain and DOMAIN\\user)")
            domain, _sep, user = user.partition("\\")
        if user is not None and not _USER.match(user):
            raise d.bad("username", "is not an SMB user name (letters, digits, _ . @ - space)")
        if domain is not None and not _DOMAIN.match(domain):
            raise d.bad("domain", "is not a Windows domain name")
        password = _password(d, opts)
        if password and not user:
            raise d.bad(
                "username",
                "is required with a password (without one XenServer's SMB SR "
                "mounts as guest and ignores the password)",
            )
        if user and not password:
            raise d.bad(
                "password",
                "is required with a username (without one XenServer's SMB SR mounts as guest)",
            )
        if opts.get("guest") and user:
            ignored.append(_ignored("guest", "credentials are given, and the SR mounts with them"))
        return Config(
            server=server,
            user=("%s\\%s" % (domain, user)) if domain else user,
            password=password,
            ignored=ignored,
            **self.volume(d),
        )

    def device_config(self, cfg):
        dc = {"server": cfg.server}
        if cfg.user:
            dc["username"] = cfg.user
            if "secret" in cfg.password:
                dc["password_secret"] = cfg.password["secret"]
            else:
                dc["password"] = cfg.password["value"]
        return dc


def _unc(d, key):
    """\\\\host\\share[\\dir…] or //host/share[/dir…] -> \\\\host\\share[\\dir…]"""
    value = d.string(key, max_len=512)
    if not (value.startswith(("\\\\", "//"))):
        raise d.bad(key, "must be a UNC path \\\\host\\share (or //host/share)")
    parts = value[2:].replace("/", "\\").split("\\")
    if len(parts) < 2 or not parts[1]:
        raise d.bad(key, "names no share (\\\\host\\share)")
    host, port = host_port(parts[0], d.name(key), default_port=445)
    if port != 445:
        raise d.bad(key, "cannot carry a port: XenServer's SMB SR always uses port 445")
    for part in parts[1:]:
        if not _SHARE.match(part) or part.strip(" .") == "":
            raise d.bad(
                key,
                "has a share or directory name that is empty, '..' or holds "
                "characters other than letters, digits, _ . $ - and space",
            )
    return "\\\\" + "\\".join([("[%s]" % host) if ":" in host else host] + parts[1:])


def _options(d):
    """Cinder's smbfs share options ("-o username=…,password=…,domain=…", several -o, or a
    bare comma list) -> ({credential: value, "vers", "port", "guest"}, ignored entries)."""
    text = d.string("options", required=False, max_len=1024)
    out = {}  # type: Dict[str, str]
    ignored = []  # type: List[Dict[str, str]]
    if text is None:
        return out, ignored
    items = []  # type: List[str]
    words = text.split()
    for i, word in enumerate(words):
        if word == "-o":
            continue
        if word.startswith("-o"):
            word = word[2:]
        elif word.startswith("-"):
            raise d.bad("options", "only '-o' options are accepted (got %r)" % word[:32])
        elif i and words[i - 1] != "-o":
            raise d.bad("options", "options are one comma list per '-o'")
        items.extend(p for p in word.split(",") if p)
    for item in items:
        name, sep, value = item.partition("=")
        low = name.lower()
        if is_secret_ref(low) and low[: -len("_secret")] in ("password", "pass"):
            # The client's form of password=…: a XAPI secret's uuid (check_given reads it).
            if not is_uuid(value):
                raise d.bad("options", "%s= is not a uuid" % name[:32])
            out["password_secret"] = value.lower()
        elif low in _CREDENTIALS:
            key = _CREDENTIALS[low]
            if key == "password":
                SCRUB.remember(value)
                problem = password_problem(value)
                if problem:
                    raise d.bad("options", "%s= %s" % (low, problem))
            elif not value.strip():
                raise d.bad("options", "%s= is empty" % low)
            out[key] = value if key == "password" else value.strip()
        elif low in ("vers", "port"):
            out[low] = value
        elif low == "guest" and not sep:
            out["guest"] = "true"
        else:
            # Only the option's name: a value may hold anything, a secret included.
            ignored.append(_ignored(name[:32], "the SR mounts with %s only" % _FIXED))
    if out.get("port") not in (None, "445"):
        raise d.bad("options", "port: XenServer's SMB SR always uses port 445")
    return out, ignored


def _ignored(option, why):
    # type: (str, str) -> Dict[str, str]
    return {"field": "data.options", "reason": "option %r is not used: %s" % (option, why)}


def _password(d, opts):
    given = [
        k
        for k, present in (
            ("password_secret", d.has("password_secret")),
            ("password", d.has("password")),
            ("options", bool(opts.get("password") or opts.get("password_secret"))),
        )
        if present
    ]
    if len(given) > 1:
        raise d.bad(given[1], "gives a password again (%s)" % " and ".join(given))
    if d.has("password_secret"):
        return {"secret": d.uuid("password_secret")}
    if opts.get("password_secret"):
        return {"secret": opts["password_secret"]}
    value = d.string("password", required=False, max_len=256)
    if value is None:
        value = opts.get("password") or None
    return {"value": value} if value else None
