"""An example third-party xenvol driver: ACME's GlusterFS appliance.

ACME's Cinder driver hands out connection_info like
  {"driver_volume_type": "acme-gluster",
   "data": {"volfile_server": "gl1.example.com", "volume": "gv0", "sr_uuid": "...",
            "vdi_uuid": "...", "backup_servers": ["gl2.example.com"]}}
and the volume is a VHD in <volume>/<sr_uuid>/<vdi_uuid>.vhd, which XCP-ng's `glusterfs` SR
serves. Drop this file into /etc/xenvol/drivers.d/ on every host; `list_drivers` shows it.
"""

import re

from xenvol_dom0.check import host_port
from xenvol_dom0.drivers.base import Config, Driver, vdi_by_uuid_with_scan

_VOLUME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class AcmeGlusterDriver(Driver):
    volume_types = ("acme-gluster",)
    sr_type = "glusterfs"
    shared = True
    content_type = "user"

    def validate(self, d):
        server = d.string("volfile_server", max_len=253)
        host_port(server, d.name("volfile_server"), default_port=24007)
        volume = d.string("volume", max_len=64)
        if not _VOLUME.match(volume):
            raise d.bad("volume", "is not a GlusterFS volume name")
        backups = d.string_list("backup_servers") or []
        for i, b in enumerate(backups):
            if not isinstance(b, str):
                raise d.bad("backup_servers[%d]" % i, "must be a host name")
            host_port(b, d.name("backup_servers[%d]" % i), default_port=24007)
        return Config(
            server=server,
            volume=volume,
            backups=backups,
            sr_uuid=d.uuid("sr_uuid"),
            vdi_uuid=d.uuid("vdi_uuid"),
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
        )

    def sr_uuid(self, cfg):
        return cfg.sr_uuid

    def sr_label(self, cfg):
        return "ACME gluster %s" % cfg.volume

    def device_config(self, cfg):
        dc = {"server": "%s:/%s" % (cfg.server, cfg.volume)}
        if cfg.backups:
            dc["backupservers"] = ":".join(cfg.backups)
        return dc

    def find_vdi(self, call, sr, cfg):
        return vdi_by_uuid_with_scan(call, sr, cfg.vdi_uuid, "data.vdi_uuid")

    def locate_vdi(self, call, sr, cfg):
        return call.find("VDI", cfg.vdi_uuid)
