"""`nfs` / `xenapinfs`: a VHD on an NFS SR, <serverpath>/<sr_uuid>/<vdi_uuid>.vhd.

This is the layout Cinder's XenAPINFS driver produces. A Cinder generic NFS volume (a file
`volume-<id>` in the export root) is not something XenServer's NFS SR can open, and is
refused with a message saying so."""
from ..check import host_port
from ..errors import UNSUPPORTED_VOLUME, XenvolError
from .base import Config, Driver, vdi_by_uuid_with_scan


class NFSDriver(Driver):
    volume_types = ("nfs", "xenapinfs")
    sr_type = "nfs"
    shared = True
    content_type = "user"

    def validate(self, d):
        fmt = d.string("format", required=False, max_len=16)
        if fmt is not None and fmt.lower() not in ("vhd", "raw"):
            raise XenvolError(UNSUPPORTED_VOLUME, "data.format: XenServer's NFS SR serves VHD "
                              "(or raw) files named <vdi-uuid>.vhd under <serverpath>/<sr-uuid>/; "
                              "a %s volume cannot be attached" % fmt, field="data.format")
        if not d.has("sr_uuid") and (d.has("name") or d.has("export")):
            raise XenvolError(UNSUPPORTED_VOLUME, "data.sr_uuid: this looks like a Cinder generic "
                              "NFS volume (export + name); XenServer's NFS SR needs the volume as "
                              "<serverpath>/<sr_uuid>/<vdi_uuid>.vhd, so sr_uuid and vdi_uuid are "
                              "required", field="data.sr_uuid")
        if d.has("export"):
            export = d.string("export", max_len=512)
            host_part, sep, path = export.partition(":/")
            if not sep:
                raise d.bad("export", "must be server:/path")
            server, _port = host_port(host_part, d.name("export"), default_port=2049)
            serverpath = "/" + path
            if ".." in serverpath.split("/") or "//" in serverpath:
                raise d.bad("export", "must be server:/plain/absolute/path (no '..', no '//')")
        else:
            server = d.string("server", max_len=256)
            host_port(server, d.name("server"), default_port=2049)
            serverpath = d.path("serverpath")
        version = d.string("nfsversion", required=False, max_len=8)
        if version is not None and version not in ("3", "4", "4.0", "4.1"):
            raise d.bad("nfsversion", "must be 3, 4, 4.0 or 4.1")
        return Config(server=server, serverpath=serverpath.rstrip("/") or "/",
                      nfsversion=version, options=d.options("options"),
                      sr_uuid=d.uuid("sr_uuid"), vdi_uuid=d.uuid("vdi_uuid"),
                      read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
                      name_label=d.string("name_label", required=False, max_len=128),
                      name_description=d.string("name_description", required=False, max_len=256))

    def sr_uuid(self, cfg):
        return cfg.sr_uuid

    def device_config(self, cfg):
        dc = {"server": cfg.server, "serverpath": cfg.serverpath}
        if cfg.nfsversion:
            dc["nfsversion"] = cfg.nfsversion
        if cfg.options:
            dc["options"] = cfg.options
        return dc

    def find_vdi(self, call, sr, cfg):
        return vdi_by_uuid_with_scan(call, sr, cfg.vdi_uuid, "data.vdi_uuid")

    def locate_vdi(self, call, sr, cfg):
        return call.find("VDI", cfg.vdi_uuid)
