"""`smbfs` / `smb`: a VHD on XenServer's SMB SR, <share>/<sr_uuid>/<vdi_uuid>.vhd.

The SR's device_config (sm SMBSR.py): `server` = \\\\host\\share, `username` (DOMAIN\\user
allowed), `password` -> `password_secret`. SMBSR always mounts with vers=3.0 and no port, so
a different SMB version or port is refused. Cinder's smbfs shape (`export` + `name`, a
`volume-<id>` file in the share root, credentials in `options` "-o username=…,password=…") maps
onto it only when the volume is laid out as that SR expects: sr_uuid and vdi_uuid are required."""

import re

from ..check import host_port
from ..redact import SCRUB
from .base import Config
from .filebased import SharedFileDriver

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict  # noqa: F401

_SHARE = re.compile(r"^[A-Za-z0-9_.$ -]{1,80}$")
_USER = re.compile(r"^[A-Za-z0-9_.@ -]{1,104}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KNOWN_OPTIONS = (
    "username",
    "user",
    "password",
    "pass",
    "domain",
    "dom",
    "workgroup",
    "vers",
    "guest",
)


class SMBDriver(SharedFileDriver):
    volume_types = ("smbfs", "smb")
    sr_type = "smb"
    sr_name, root, cinder = "XenServer's SMB SR", "<share>", "smbfs"

    def validate(self, d):
        opts = _options(d)
        self.refuse_other_layouts(d)
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
        return Config(
            server=server,
            user=("%s\\%s" % (domain, user)) if domain else user,
            password=password,
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
    """Cinder's smbfs share options, "-o username=…,password=…,domain=…"."""
    text = d.string("options", required=False, max_len=1024)
    out = {}  # type: Dict[str, str]
    if text is None:
        return out
    text = text.strip()
    if text.startswith("-o"):
        text = text[2:].strip()
    for item in [i for i in text.split(",") if i.strip()]:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if name not in _KNOWN_OPTIONS:
            raise d.bad(
                "options",
                "option %r is not honoured by XenServer's SMB SR (it mounts "
                "with cache=loose,vers=3.0,actimeo=0 and credentials only)" % name[:32],
            )
        if name in ("password", "pass"):
            SCRUB.remember(value)
            if not value or len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise d.bad("options", "has an empty, too long or unprintable password")
            out["password"] = value
        elif name != "guest":
            out[{"user": "username", "dom": "domain", "workgroup": "domain"}.get(name, name)] = (
                value.strip()
            )
    return out


def _password(d, opts):
    if d.has("password_secret"):
        return {"secret": d.uuid("password_secret")}
    value = d.string("password", required=False, max_len=256)
    if value is None:
        value = opts.get("password") or None
    return {"value": value} if value else None
