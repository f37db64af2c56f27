"""`glusterfs`: VHD files in <volume>/<sr-uuid>/ on a real GlusterFS volume (xcp-ng sm
drivers/GlusterFSSR.py), read through libgfapi where dom0 mounts with mount.glusterfs.

GlusterFSSR mounts once at sr_attach and unmounts at sr_detach; the simulator keeps one gfapi
client per (host, SR) for as long, so scans and VDI attaches read through that "mount"."""

import ipaddress
import os
import socket
import threading
from typing import Optional

from ..peers import gfapi_client
from .base import StorageManager
from .errors import raw_error, sm_error
from .vhdfiles import UUID_RE, vdi_record

HOST_NAME_MAX = 64  # mount.glusterfs is_valid_hostname: longer names are refused/dropped
MOUNT_FAILED = 1  # mount.glusterfs exits 1 for every failure GlusterFSSR.mount can meet


class MountError(Exception):
    """GlusterFSSR.GlusterFSException: its text is what the SR reports."""


def _mount_failed():
    # GlusterFSSR.mount: any CommandException of `mount -t glusterfs` (exit code passed on
    # by mount(8) from the helper) -> "mount failed with return code %d".
    return MountError("mount failed with return code %d" % MOUNT_FAILED)


def parse_server(server):
    """mount.glusterfs main: <servers>:<volume>[/<subdir>] split at the last ':'; servers
    are ','-separated (parse_volfile_servers). Returns (servers, volume, subdir)."""
    if not server or server != "".join(server.split()):
        # Stricter than mount.glusterfs, whose sed and word splitting keep pieces of a
        # server string with blanks in it.
        raise _mount_failed()
    hosts, sep, volume_str = server.rpartition(":")
    servers = [h for h in hosts.split(",") if h and len(h) < HOST_NAME_MAX]
    volume = volume_str[1:] if volume_str.startswith("/") else volume_str
    name, slash, subdir = volume.partition("/")
    if slash and name == "snaps":
        # /snaps/<snap>/<vol> is a read-only snapshot volume, not a subdir mount.
        name, subdir = volume, ""
    if not sep or not name or not servers:
        raise _mount_failed()
    return servers, name, subdir.strip("/")


def parse_backups(value):
    """mount.glusterfs parse_backup_volfile_servers: ':'-separated, IPv6 inside [...];
    nested or unbalanced brackets, or brackets around no ':', are a syntax error (exit 1);
    over-long names are dropped."""
    out, cur, depth, colons = [], "", 0, 0
    for ch in value:
        if depth not in (0, 1):
            raise _mount_failed()
        if depth and ch == ":":
            colons += 1
        if ch == "[":
            depth, colons = depth + 1, 0
            continue
        if ch == "]":
            depth -= 1
            if not colons:
                raise _mount_failed()
            continue
        if ch == ":" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise _mount_failed()
    out.append(cur)
    return [s for s in out if s and len(s) < HOST_NAME_MAX]


def mount_options(dconf):
    """The -o string GlusterFSSR.mount builds, parsed as mount.glusterfs parse_options does:
    split on ',' and blanks, key=value pairs. Returns the backup servers.

    Stricter than mount.glusterfs: only the two keys the SR writes are accepted (the helper
    also knows log-level, transport, ro... which can only get here smuggled inside a value).
    fetch-attempts is parsed and has no effect: glusterfsd.c ARGP_VOLFILE_MAX_FETCH_ATTEMPTS
    ignores its value ("obsolete"); every volfile server is tried once, in order."""
    options = []
    if "backupservers" in dconf:
        options.append("backup-volfile-servers=" + dconf["backupservers"])
    if "fetchattempts" in dconf:
        options.append("fetch-attempts=" + dconf["fetchattempts"])
    backups = []
    for pair in ",".join(options).replace(",", " ").split():
        key, eq, value = pair.partition("=")
        if not eq or key not in ("backup-volfile-servers", "fetch-attempts"):
            raise _mount_failed()  # mount.glusterfs: "Invalid option", exit 1
        if key == "backup-volfile-servers":
            backups = parse_backups(value)
    return backups


def _loopback(host):
    """The address gfapi may contact for `host`, or None: the simulator never leaves the
    machine, so a server that is not loopback is one that does not answer."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), gfapi_client.GLUSTERD_PORT, 0, socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError):
        return None
    addr = str(infos[0][4][0])
    return addr if ipaddress.ip_address(addr.split("%")[0]).is_loopback else None


class Mount:
    """A mounted volume (or subdir of it): gfapi client plus the path prefix."""

    def __init__(self, dconf, logfile):
        servers, volume, subdir = parse_server(dconf["server"] or "")
        servers = servers + mount_options(dconf)
        reachable = [a for a in (_loopback(s) for s in servers) if a]
        if not reachable:
            raise _mount_failed()
        self.volume: Optional[gfapi_client.Volume]
        try:
            self.volume = gfapi_client.Volume(reachable, volume, logfile)
        except gfapi_client.GlusterError:
            raise _mount_failed() from None
        self.root = "/" + subdir if subdir else ""
        if subdir and not self.is_dir(""):
            # glusterfs --subdir-mount: the server refuses a directory that is not there.
            self.close()
            raise _mount_failed()

    def path(self, rel):
        return (self.root + "/" + rel.strip("/")) if rel else (self.root or "/")

    def _open(self):
        assert self.volume is not None, "a closed mount is used"
        return self.volume

    def listdir(self, rel):
        return self._open().listdir(self.path(rel))

    def is_dir(self, rel):
        return self._open().is_dir(self.path(rel))

    def read(self, rel, offset, count):
        return self._open().read(self.path(rel), offset, count)

    def close(self):
        if self.volume is not None:
            self.volume.close()
            self.volume = None


class GlusterFS(StorageManager):
    type = "glusterfs"
    # xcp-ng sm drivers/GlusterFSSR.py CAPABILITIES
    capabilities = (
        "SR_PROBE",
        "SR_UPDATE",
        "VDI_CREATE",
        "VDI_DELETE",
        "VDI_ATTACH",
        "VDI_DETACH",
        "VDI_UPDATE",
        "VDI_CLONE",
        "VDI_SNAPSHOT",
        "VDI_RESIZE",
        "VDI_MIRROR",
        "VDI_GENERATE_CONFIG",
        "VDI_RESET_ON_BOOT/2",
        "ATOMIC_PAUSE",
    )

    def __init__(self, sim):
        StorageManager.__init__(self, sim)
        self._mounts = {}
        self._guard = threading.Lock()

    def check_config(self, dconf):
        # GlusterFSSR.load: glusterfs must be installed (SRUnavailable), then
        # `'server' not in self.dconf` -> ConfigServerMissing; an empty server is mounted.
        try:
            gfapi_client.lib()
        except gfapi_client.GlusterError:
            raise sm_error("SRUnavailable", "glusterfs is not installed") from None
        if "server" not in dconf:
            raise sm_error("ConfigServerMissing")

    @staticmethod
    def _mountpoint(dconf, sr_uuid):
        # GlusterFSSR.load: /var/run/sr-mount/GlusterFS/<server host part>/<sr-uuid>
        return "/var/run/sr-mount/GlusterFS/%s/%s" % (
            (dconf["server"] or "").split(":")[0],
            sr_uuid,
        )

    def _logfile(self, host, mountpoint):
        # mount.glusterfs: the client logs to /var/log/glusterfs/<mount point with '-'>.log
        d = host.path("/var/log/glusterfs")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, mountpoint.strip("/").replace("/", "-") + ".log")

    def _mount(self, host, dconf, mountpoint):
        self.check_config(dconf)
        m = Mount(dconf, self._logfile(host, mountpoint))
        try:
            # GlusterFSSR.mount sanity check: the mount must be listable.
            m.listdir("")
        except gfapi_client.GlusterError:
            m.close()
            raise MountError("Permission denied. Please check user privileges.") from None
        return m

    def _mounted(self, host, sr, dconf):
        """The SR's mount on this host, mounting it if the simulator lost it (a restart)."""
        key = (host.uuid, sr["uuid"])
        with self._guard:
            m = self._mounts.get(key)
        if m is None:
            try:
                m = self._mount(host, dconf, self._mountpoint(dconf, sr["uuid"]))
            except MountError as e:
                raise raw_error(12, str(e)) from None
            with self._guard:
                self._mounts[key] = m
        return m

    def attach(self, host, sr, dconf):
        # GlusterFSSR.attach: mount unless checkmount() (mounted *and* <mount>/<sr-uuid>
        # exists); a GlusterFSException -> SROSError(12, text). It symlinks <mount>/<sr-uuid>
        # without checking it exists, so a missing SR directory surfaces at scan.
        self.check_config(dconf)
        with self._guard:
            m = self._mounts.get((host.uuid, sr["uuid"]))
        if m is not None:
            if m.is_dir(sr["uuid"]):
                return
            # Mounted, but checkmount() is false: mount again on the same mount point, which
            # mount.glusterfs refuses ("already mounted" per mtab) with exit 32.
            raise raw_error(12, "mount failed with return code 32")
        self._mounted(host, sr, dconf)

    def detach(self, host, sr, dconf):
        # GlusterFSSR.detach: `if not self.checkmount(): return` -- with the SR directory
        # gone the volume stays mounted (and the next attach meets that mount).
        key = (host.uuid, sr["uuid"])
        with self._guard:
            m = self._mounts.get(key)
            if m is None or not m.is_dir(sr["uuid"]):
                return
            del self._mounts[key]
        m.close()

    def scan(self, host, sr, dconf):
        self.check_config(dconf)
        m = self._mounted(host, sr, dconf)
        base = sr["uuid"]
        try:
            entries = m.listdir(base)
        except gfapi_client.GlusterError:
            # FileSR._loadvdis: util.listdir of a missing directory is an EIO that
            # util.ioretry retries IORETRY_MAX (20) times, 1 s apart, then raises ETIMEDOUT;
            # SRCommand.run turns the CommandException into SRScan. (vhd-util scan of the
            # glob before it is taken to list nothing; if it failed, it is SRScan too.)
            self.delay(20)
            raise sm_error(
                "SRScan",
                "Command <function FileSR._loadvdis.<locals>.<lambda>> "
                "failed (Timeout): Connection timed out",
            ) from None
        out = []
        for name, is_dir, size in entries:
            path = "%s/%s" % (base, name)
            vdi = (
                None
                if is_dir
                else vdi_record(
                    name, size, lambda path=path, size=size: m.read(path, max(size - 512, 0), 512)
                )
            )
            if vdi:
                out.append(vdi)
        return out

    def vdi_attach(self, host, sr, dconf, vdi):
        # FileVDI.attach: the file must exist -> VDIUnavailable 'VDI %s unavailable %s'.
        self.check_config(dconf)
        m = self._mounted(host, sr, dconf)
        try:
            names = [n for n, _d, _s in m.listdir(sr["uuid"])]
        except gfapi_client.GlusterError:
            names = []
        for ext in (".vhd", ".raw"):
            if vdi["location"] + ext in names:
                return
        raise sm_error(
            "VDIUnavailable",
            "VDI %s unavailable /var/run/sr-mount/%s/%s.vhd"
            % (vdi["uuid"], sr["uuid"], vdi["location"]),
        )

    def probe(self, host, dconf):
        # GlusterFSSR.probe: mount at the probe mount point, list uuid-named entries, unmount.
        # Its GlusterFSException is not caught there: SRCommand.run reports a generic 1200.
        self.check_config(dconf)
        try:
            m = self._mount(host, dconf, "/var/run/sr-mount/probe")
        except MountError as e:
            raise raw_error(1200, str(e)) from None
        try:
            found = sorted(n for n, _d, _s in m.listdir("") if UUID_RE.match(n))
        finally:
            m.close()
        items = "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in found)
        return '<?xml version="1.0" ?>\n<SRlist>\n%s</SRlist>\n' % items
