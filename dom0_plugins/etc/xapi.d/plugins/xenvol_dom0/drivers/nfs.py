"""`nfs` / `xenapinfs`: a VHD on an NFS SR, <serverpath>/<sr_uuid>/<vdi_uuid>.vhd.

This is the layout Cinder's XenAPINFS driver produces. A Cinder generic NFS volume (a file
`volume-<id>` in the export root) is not something XenServer's NFS SR can open, and is
refused with a message saying so."""

from ..check import host_port
from .base import Config
from .filebased import SharedFileDriver

# Mount options a caller may pass (name -> takes a value). SM's NFS SR mounts with
# "soft,proto=<tcp|udp>,vers=<nfsversion>,acdirmin=0,acdirmax=0" and appends
# device_config options (sm libs/sm/nfs.py soft_mount); vers/nfsvers and proto are mapped to
# nfsversion and useUDP instead, so that SM's own choice does not contradict them.
MOUNT_OPTIONS = {
    "vers": True,
    "nfsvers": True,
    "proto": True,
    "port": True,
    "timeo": True,
    "retrans": True,
    "rsize": True,
    "wsize": True,
    "actimeo": True,
    "acregmin": True,
    "acregmax": True,
    "acdirmin": True,
    "acdirmax": True,
    "nconnect": True,
    "minorversion": True,
    "mountport": True,
    "mountproto": True,
    "sec": True,
    "hard": False,
    "soft": False,
    "intr": False,
    "nointr": False,
    "nolock": False,
    "lock": False,
    "noac": False,
    "ac": False,
    "tcp": False,
    "udp": False,
    "noatime": False,
    "nodiratime": False,
    "relatime": False,
    "noacl": False,
    "nocto": False,
}
VERSIONS = ("3", "4", "4.0", "4.1")


class NFSDriver(SharedFileDriver):
    volume_types = ("nfs", "xenapinfs")
    sr_type = "nfs"
    sr_name, root, cinder = "XenServer's NFS SR", "<serverpath>", "generic NFS"
    cinder_keys = ("name", "export")

    def validate(self, d):
        self.refuse_other_layouts(d)
        if d.has("export"):
            export = d.string("export", max_len=512)
            host_part, sep, path = export.partition(":/")
            if not sep:
                raise d.bad("export", "must be server:/path")
            server, _port = host_port(
                host_part, d.name("export"), default_port=2049, bare_v6_port=False
            )
            serverpath = "/" + path
            if ".." in serverpath.split("/") or "//" in serverpath:
                raise d.bad("export", "must be server:/plain/absolute/path (no '..', no '//')")
        else:
            server = d.string("server", max_len=256)
            host_port(server, d.name("server"), default_port=2049, bare_v6_port=False)
            serverpath = d.path("serverpath")
        version = d.string("nfsversion", required=False, max_len=8)
        if version is not None and version not in VERSIONS:
            raise d.bad("nfsversion", "must be 3, 4, 4.0 or 4.1")
        version, udp, options = _options(d, version)
        return Config(
            server=server,
            serverpath=serverpath.rstrip("/") or "/",
            nfsversion=version,
            udp=udp,
            options=options,
            **self.volume(d),
        )

    def device_config(self, cfg):
        dc = {"server": cfg.server, "serverpath": cfg.serverpath}
        if cfg.nfsversion:
            dc["nfsversion"] = cfg.nfsversion
        if cfg.options:
            dc["options"] = cfg.options
        if cfg.udp:
            dc["useUDP"] = "true"  # sm NFSSR.py set_transport
        return dc


def _options(d, version):
    """Cinder's options ("-o vers=4.1,proto=tcp") -> (nfsversion, udp, SM options string)."""
    udp = False
    rest = []
    for name, value in d.mount_options("options", MOUNT_OPTIONS):
        if name in ("vers", "nfsvers"):
            if value not in VERSIONS:
                raise d.bad("options", "vers must be 3, 4, 4.0 or 4.1 (got %r)" % value[:16])
            if version is not None and version != value:
                raise d.bad("options", "vers=%s contradicts nfsversion %s" % (value, version))
            version = value
        elif name in ("proto", "tcp", "udp"):
            proto = value or name
            if proto not in ("tcp", "udp"):
                raise d.bad("options", "proto must be tcp or udp (got %r)" % proto[:16])
            udp = proto == "udp"
        else:
            rest.append(name if value is None else "%s=%s" % (name, value))
    return version, udp, ",".join(rest)
