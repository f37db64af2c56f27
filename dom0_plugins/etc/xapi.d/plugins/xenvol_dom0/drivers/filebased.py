"""What the file-based drivers share: the VDI is a file <vdi_uuid>.vhd in the SR's directory,
which a scan of the SR makes known (sm FileSR.py FileSR.scan). `FileBasedDriver` is that;
`SharedFileDriver` adds what the network file SRs (nfs, smb, glusterfs, cephfs) have in
common: the caller names the SR and the VDI, and Cinder's own layouts are refused with a
message saying why. A helper module, not a driver: the registry does not load it as one."""

from ..errors import UNSUPPORTED_VOLUME, XenvolError
from .base import Driver, vdi_by_uuid_with_scan

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple  # noqa: F401


class FileBasedDriver(Driver):
    content_type = "user"

    def find_vdi(self, call, sr, cfg):
        return vdi_by_uuid_with_scan(call, sr, cfg.vdi_uuid, "data.vdi_uuid")

    def locate_vdi(self, call, sr, cfg):
        return call.find("VDI", cfg.vdi_uuid)


class SharedFileDriver(FileBasedDriver):
    shared = True
    # For the refusals: the SR ("XenServer's NFS SR"), the files it serves, the place that
    # holds its <sr-uuid> directory ("<serverpath>"), Cinder's name of the driver whose volumes
    # it cannot open ("generic NFS"), and the keys that mark such a volume.
    sr_name = root = cinder = None  # type: Optional[str]
    files = "VHD (or raw)"
    cinder_keys = ("name",)  # type: Tuple[str, ...]

    def refuse_unsupported(self, d):
        self.refuse_other_layouts(d)

    def refuse_other_layouts(self, d):
        """Refuse a format the SR does not serve and a Cinder file volume (no sr_uuid)."""
        fmt = d.string("format", required=False, max_len=16)
        if fmt is not None and fmt.lower() not in ("vhd", "raw"):
            raise XenvolError(
                UNSUPPORTED_VOLUME,
                "data.format: %s serves %s files named "
                "<vdi-uuid>.vhd under %s/<sr-uuid>/; a %s volume cannot be "
                "attached" % (self.sr_name, self.files, self.root, fmt),
                field="data.format",
            )
        if not d.has("sr_uuid") and any(d.has(key) for key in self.cinder_keys):
            raise XenvolError(
                UNSUPPORTED_VOLUME,
                "data.sr_uuid: this looks like a Cinder %s "
                "volume (export + name); %s needs the volume as "
                "%s/<sr_uuid>/<vdi_uuid>.vhd, so sr_uuid and vdi_uuid are "
                "required" % (self.cinder, self.sr_name, self.root),
                field="data.sr_uuid",
            )

    def volume(self, d):
        """The Config fields every network file volume has; checked after the driver's own."""
        return dict(
            sr_uuid=d.uuid("sr_uuid"),
            vdi_uuid=d.uuid("vdi_uuid"),
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
            name_label=d.string("name_label", required=False, max_len=128),
            name_description=d.string("name_description", required=False, max_len=256),
        )

    def sr_uuid(self, cfg):
        return cfg.sr_uuid
