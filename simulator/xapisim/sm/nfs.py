"""`nfs`: VHD files in <serverpath>/<sr-uuid>/ on a real NFS export (NFSSR)."""

from ..peers import nfs_client
from .base import StorageManager, loopback_address
from .errors import raw_error, sm_error
from .vhdfiles import UUID_RE, vdi_record


def mount_options(options):
    """The mount options SM would pass on that the userspace client honours (ports)."""
    ports = {}
    for opt in (options or "").split(","):
        key, _, value = opt.strip().partition("=")
        if key in ("port", "mountport") and value.isdigit():
            ports[key] = int(value)
    return ports.get("port", 0), ports.get("mountport", 0)


class NFS(StorageManager):
    type = "nfs"
    capabilities = (
        "SR_PROBE",
        "SR_UPDATE",
        "VDI_CREATE",
        "VDI_DELETE",
        "VDI_ATTACH",
        "VDI_DETACH",
        "VDI_CLONE",
        "VDI_SNAPSHOT",
        "VDI_RESIZE",
    )
    required = (("server", "ConfigServerMissing"), ("serverpath", "ConfigServerPathMissing"))

    def _mount(self, dconf):
        self.check_config(dconf)
        version = dconf.get("nfsversion", "3")
        if version not in ("3", "4", "4.0", "4.1"):
            raise raw_error(1200, "Invalid nfsversion.")
        server = loopback_address(dconf["server"], "NFSTarget", 2049)
        nfsport, mountport = mount_options(dconf.get("options"))
        try:
            return nfs_client.Mount(server, dconf["serverpath"], version, nfsport, mountport)
        except nfs_client.NFSError as e:
            text = str(e)
            if "nfs_service failed" in text or "not available" in text:
                raise sm_error("NFSTarget", text) from None
            raise sm_error("NFSMount", text) from None

    def attach(self, host, sr, dconf):
        with self._mount(dconf) as m:
            if not m.is_dir("/" + sr["uuid"]):
                raise sm_error(
                    "NFSMount",
                    "mount.nfs: %s:%s/%s: No such file or directory"
                    % (dconf["server"], dconf["serverpath"], sr["uuid"]),
                )

    def scan(self, host, sr, dconf):
        out = []
        with self._mount(dconf) as m:
            base = "/" + sr["uuid"]
            try:
                entries = m.listdir(base)
            except nfs_client.NFSError as e:
                raise sm_error("SRUnavailable", str(e)) from None
            for name, is_dir, size in entries:
                path = "%s/%s" % (base, name)
                vdi = (
                    None
                    if is_dir
                    else vdi_record(
                        name,
                        size,
                        lambda path=path, size=size: m.read(path, max(size - 512, 0), 512),
                    )
                )
                if vdi:
                    out.append(vdi)
        return out

    def vdi_attach(self, host, sr, dconf, vdi):
        with self._mount(dconf) as m:
            names = [n for n, _d, _s in m.listdir("/" + sr["uuid"])]
        if vdi["location"] + ".vhd" not in names and vdi["location"] + ".raw" not in names:
            raise sm_error("VDIUnavailable", "%s is missing" % vdi["location"])

    def probe(self, host, dconf):
        with self._mount(dconf) as m:
            found = [n for n, is_dir, _s in m.listdir("/") if is_dir and UUID_RE.match(n)]
        items = "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in found)
        return '<?xml version="1.0" ?>\n<SRlist>\n%s</SRlist>\n' % items
