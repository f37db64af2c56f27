"""`smb`: VHD files in <share>/<sr-uuid>/ on a real SMB server (sm drivers/SMBSR.py, cifutils.py),
read over SMB 3.0 with a userspace client (smbprotocol) instead of mount.cifs."""

import ipaddress
import socket
import uuid as uuidlib

from .base import StorageManager
from .errors import raw_error, sm_error
from .vhdfiles import UUID_RE, vdi_record

# mount.cifs exit status when the kernel refuses the mount (EX_FAIL); SMBSR.mount reports
# "mount failed with return code %d" with it. A UNC it cannot parse exits EX_USAGE (1).
EX_FAIL, EX_USAGE = 32, 1
SMB_PORT = 445  # SMBSR passes no port option to mount.cifs


class MountError(Exception):
    """SMBSR.SMBException: its text becomes the opterr of the SM error."""


class Share:
    """What SMBSR.mount gives: the share root, listed once as its sanity check."""

    def __init__(self, unc, credentials):
        import smbclient
        from smbprotocol import Dialects
        from smbprotocol.connection import Connection

        self._smbclient = smbclient
        parts = unc[2:].replace("\\", "/").split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise MountError("mount failed with return code %d" % EX_USAGE)
        host, share, sub = parts[0], parts[1], [p for p in parts[2:] if p]
        try:
            infos = socket.getaddrinfo(host.strip("[]"), SMB_PORT, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise MountError("mount failed with return code %d" % EX_FAIL) from None
        if not ipaddress.ip_address(str(infos[0][4][0]).split("%")[0]).is_loopback:
            # The simulator only talks to peers on this machine.
            raise MountError("mount failed with return code %d" % EX_FAIL)
        self.root = "\\\\%s\\%s" % (host, "\\".join([share] + sub))
        self.cache = {}
        # SMBSR.getMountOptions: vers=3.0, so negotiate exactly SMB 3.0.
        conn = Connection(uuidlib.uuid4(), host, SMB_PORT)
        try:
            conn.connect(Dialects.SMB_3_0_0, timeout=5)
        except Exception as e:
            raise MountError("mount failed with return code %d" % EX_FAIL) from e
        self.cache["%s:%d" % (host.lower(), SMB_PORT)] = conn
        if credentials:
            user, password, _domain = credentials
            self.kw = {"username": user, "password": password, "auth_protocol": "ntlm"}
        else:
            # cifutils found no credentials: mount.cifs -o guest (an anonymous NTLM logon).
            self.kw = {"username": "guest", "password": "", "auth_protocol": "ntlm"}
        self.kw["connection_cache"] = self.cache
        try:
            self.listdir("")
        except Exception as e:
            self.close()
            raise MountError("mount failed with return code %d" % EX_FAIL) from e

    def path(self, rel):
        return self.root + ("\\" + rel.replace("/", "\\") if rel else "")

    def listdir(self, rel):
        """[(name, is_dir, size)]"""
        return [
            (e.name, e.is_dir(), e.stat().st_size)
            for e in self._smbclient.scandir(self.path(rel), **self.kw)
        ]

    def is_dir(self, rel):
        try:
            return self._smbclient.path.isdir(self.path(rel), **self.kw)
        except Exception:
            return False

    def read(self, rel, offset, length):
        with self._smbclient.open_file(self.path(rel), mode="rb", **self.kw) as fh:
            fh.seek(offset)
            return fh.read(length)

    def touch_and_remove(self, rel):
        self._smbclient.open_file(self.path(rel), mode="ab", **self.kw).close()
        self._smbclient.remove(self.path(rel), **self.kw)

    def close(self):
        self._smbclient.reset_connection_cache(connection_cache=self.cache)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SMB(StorageManager):
    type = "smb"
    # sm drivers/SMBSR.py CAPABILITIES
    capabilities = (
        "SR_PROBE",
        "SR_UPDATE",
        "SR_CACHING",
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
        "VDI_CONFIG_CBT",
        "VDI_ACTIVATE",
        "VDI_DEACTIVATE",
        "THIN_PROVISIONING",
        "VDI_READ_CACHING",
    )
    # SMBSR.load: 'server' not in dconf -> ConfigServerMissing
    required = (("server", "ConfigServerMissing"),)

    def _credentials(self, dconf):
        """cifutils.getCIFCredentials: used only when `username` and a password (or its
        secret) are both present; `DOMAIN\\user` splits off the domain, three parts are an
        uncaught CIFSException (generic fault 1200)."""
        if "username" not in dconf or not ("password" in dconf or "password_secret" in dconf):
            return None
        tokens = dconf["username"].split("\\")
        if len(tokens) > 2:
            raise raw_error(
                1200,
                "A maximum of 2 tokens are expected (<domain>\\<username>). "
                "%d were given." % len(tokens),
            )
        password = self.secret(dconf, "password")
        domain = tokens[0] if len(tokens) == 2 else None
        user = tokens[-1] if domain is None else "%s\\%s" % (domain, tokens[-1])
        return user, password or "", domain

    def _mount(self, dconf, error="SMBMount"):
        self.check_config(dconf)
        credentials = self._credentials(dconf)
        try:
            return Share(dconf["server"], credentials)
        except MountError as e:
            raise sm_error(error, str(e)) from None

    def attach(self, host, sr, dconf):
        # SMBSR.attach: mount, symlink <share>/<sr-uuid>, then FileSR.SharedFileSR
        # _check_writable (create and remove a file there); a missing or read-only SR
        # directory fails that check with SharedFileSystemNoWrite and the mount is undone.
        with self._mount(dconf) as share:
            try:
                share.touch_and_remove("%s/%s" % (sr["uuid"], uuidlib.uuid4()))
            except Exception as e:
                raise sm_error("SharedFileSystemNoWrite") from e

    def scan(self, host, sr, dconf):
        # FileSR.scan: the SR path must exist (SRUnavailable), then vhd-util scan.
        out = []
        with self._mount(dconf) as share:
            base = sr["uuid"]
            if not share.is_dir(base):
                raise sm_error("SRUnavailable")
            for name, is_dir, size in share.listdir(base):
                path = "%s/%s" % (base, name)
                vdi = (
                    None
                    if is_dir
                    else vdi_record(
                        name,
                        size,
                        lambda path=path, size=size: share.read(path, max(size - 512, 0), 512),
                    )
                )
                if vdi:
                    out.append(vdi)
        return out

    def vdi_attach(self, host, sr, dconf, vdi):
        with self._mount(dconf) as share:
            names = [n for n, _d, _s in share.listdir(sr["uuid"])]
        if vdi["location"] + ".vhd" not in names and vdi["location"] + ".raw" not in names:
            raise sm_error("VDIUnavailable", "%s is missing" % vdi["location"])

    def probe(self, host, dconf):
        # SMBSR.probe: mount at the probe mount point, list uuid-named entries (util.SRtoXML).
        with self._mount(dconf) as share:
            found = sorted(n for n, is_dir, _s in share.listdir("") if UUID_RE.match(n))
        items = "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in found)
        return '<?xml version="1.0" ?>\n<SRlist>\n%s</SRlist>\n' % items
