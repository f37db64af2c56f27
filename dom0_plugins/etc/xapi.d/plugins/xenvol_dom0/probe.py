"""What `xenvol check` asks of a host's dom0 (the `probe` function), read-only: dom0's
Python and packages, xenvol.conf, the journal and results directories, what gc and
recover would report, the initiator name file, FC ports, and the file_roots a smoke test
can use. And the smoke test's scratch file volume (`smoke_volume`): made in a directory of
its own under a file_roots entry, removed afterwards; nothing else is touched."""

import errno
import os
import platform
import subprocess
import time

from . import gc as gc_mod
from . import paths, policy, settings
from .call import Call
from .drivers.fibre_channel import host_ports
from .errors import INVALID_ARGUMENT, POLICY_REFUSED, XenvolError
from .version import API_LEVEL, VERSION

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional  # noqa: F401

INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"  # what iscsid logs in as (xapi writes it)
MULTIPATH_CONF = "/etc/multipath.conf"
INVENTORY = "/etc/xensource-inventory"
# The packages whose versions a bug report needs (where rpm can read dom0's database).
PACKAGES = ("sm", "xapi-core", "xenvol-xapi-plugin")
SMOKE_PREFIX = "xenvol-smoke-"
SMOKE_SIZE = 16 << 20


def probe(session, pool_wide):
    # type: (Any, bool) -> Dict[str, Any]
    found, state, problems = settings.read()
    out = {
        "version": VERSION,
        "api_level": API_LEVEL,
        "python": platform.python_version(),
        "inventory": _inventory(),
        "packages": _packages(),
        "config": {
            "state": state,
            "problems": [dict(p, message=settings.describe(p)) for p in problems],
        },
        "dirs": [_dir("journal", paths.journal_dir()), _dir("results", paths.results_dir())],
        "initiator_file": _initiator_name(),
        "multipath_conf": os.path.exists(MULTIPATH_CONF),
        "fc_ports": host_ports(),
        "file_roots": [_dir("file_root", r) for r in found["file_roots"]],
        "time": time.time(),
    }  # type: Dict[str, Any]
    if state == "invalid":
        # A Call works only with a valid file: what gc would report waits for the fix.
        x = session.xenapi
        out["host_uuid"] = x.host.get_uuid(x.session.get_this_host(session._session))
        out["leftovers"] = None
        return out
    call = Call(session)
    out["host_uuid"] = call.host_uuid
    out["settings"] = dict(
        (k, found[k]) for k in ("lease_stale_after", "lock_timeout", "placement", "file_roots")
    )
    out["wait_limit"] = settings.wait_limit(found)
    # gc's dry run: dead journals (what recover would roll back), stale leases, and with
    # pool_wide the pool's leftovers; it changes nothing (and asks other hosts' recover
    # only with probe=true).
    out["leftovers"] = gc_mod.run(call, False, pool_wide)["items"]
    return out


def _inventory():
    # type: () -> Dict[str, str]
    out = {}
    for line in _read(INVENTORY).splitlines():
        key, _, value = line.strip().partition("=")
        if key in ("PRODUCT_BRAND", "PRODUCT_VERSION", "PLATFORM_VERSION", "BUILD_NUMBER"):
            out[key] = value.strip("'\"")
    return out


def _packages():
    # type: () -> Dict[str, str]
    """{name: version-release, or "" when not installed}; {} where rpm cannot run."""
    try:
        p = subprocess.run(
            ["rpm", "-q", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n"] + list(PACKAGES),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            universal_newlines=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    out = dict((name, "") for name in PACKAGES)
    for line in p.stdout.splitlines():
        name, _, version = line.partition(" ")
        if name in out and version:
            out[name] = version
    return out


def _dir(name, path):
    # type: (str, str) -> Dict[str, Any]
    """A directory's state without touching it: a missing one is judged by the nearest
    directory above it (the plugin makes it on first use)."""
    out = {"name": name, "path": path, "exists": os.path.isdir(path)}  # type: Dict[str, Any]
    if os.path.exists(path) and not out["exists"]:
        out["problem"] = "is not a directory"
        return out
    base = path
    while not os.path.isdir(base) and base != "/":
        base = os.path.dirname(base)
    out["writable"] = os.access(base, os.W_OK | os.X_OK)
    try:
        st = os.statvfs(base)
        out["free_bytes"] = st.f_bavail * st.f_frsize
        out["total_bytes"] = st.f_blocks * st.f_frsize
        out["read_only"] = bool(st.f_flag & os.ST_RDONLY)
    except OSError as e:
        out["problem"] = "cannot stat: %s" % e.strerror
    return out


def _initiator_name():
    # type: () -> Optional[str]
    """InitiatorName= of iscsid's file; None when there is no file."""
    if not os.path.exists(INITIATOR_FILE):
        return None
    for line in _read(INITIATOR_FILE).splitlines():
        key, _, value = line.strip().partition("=")
        if key == "InitiatorName":
            return value.strip()
    return ""


def _read(path):
    # type: (str) -> str
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


# ---------------------------------------------------------------------- the smoke volume
def smoke_volume(action, volume):
    # type: (str, str) -> Dict[str, Any]
    """create: <root>/xenvol-smoke-<volume>/<volume>.raw (sparse) under the first file_roots
    entry that is a directory xenvol may serve; remove: that file and directory, nothing
    else (a directory holding anything more is left, and said)."""
    roots = settings.load()["file_roots"]
    if action == "create":
        for root in roots:
            if not os.path.isdir(root):
                continue
            try:
                base = policy.file_directory(root, roots, "file_roots")
            except XenvolError:
                continue
            d = os.path.join(base, SMOKE_PREFIX + volume)
            os.mkdir(d, 0o700)
            with open(os.path.join(d, volume + ".raw"), "wb") as fh:
                fh.truncate(SMOKE_SIZE)
            return {"path": d, "vdi_uuid": volume, "size": SMOKE_SIZE}
        raise XenvolError(
            POLICY_REFUSED,
            "file_roots: none of %s is an existing directory xenvol may serve; make one "
            "(mkdir -p) or set file_roots in %s" % (", ".join(roots), paths.config_file()),
            field="file_roots",
        )
    if action != "remove":
        raise XenvolError(INVALID_ARGUMENT, "action: create or remove", field="action")
    removed = []
    for root in roots:
        d = os.path.join(os.path.realpath(root), SMOKE_PREFIX + volume)
        f = os.path.join(d, volume + ".raw")
        if os.path.isfile(f):
            os.unlink(f)
            removed.append(f)
        try:
            os.rmdir(d)
            removed.append(d)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise XenvolError(
                    INVALID_ARGUMENT, "%s is not empty; left as it is" % d, field="volume"
                ) from None
    return {"removed": removed}
