"""`file`: a VHD or raw file in a directory of this host (local or already mounted), served
by a `file` SR ("file based SR attach for XCP"). Local to the host: one SR per host and path.

Only directories under the operator's file_roots (default /var/lib/xenvol/volumes), after
symlinks and '..' are resolved, and never a system directory or another SR's mount."""

import os

from .. import policy
from .base import Config, Driver, name_uuid
from .filebased import FileBasedDriver


class FileDriver(FileBasedDriver):
    volume_types = ("file",)
    sr_type = "file"
    shared = False

    def validate(self, d):
        # The SR is identified by the real directory, whatever symlink the caller named.
        path = os.path.realpath(d.path("path"))
        return Config(
            path=path,
            vdi_uuid=d.uuid("vdi_uuid"),
            sr_uuid=d.uuid("sr_uuid", required=False),
            read_only=d.choice("access_mode", ("rw", "ro"), "rw") == "ro",
            name_label=d.string("name_label", required=False, max_len=128),
        )

    def sr_uuid(self, cfg):
        # A file SR is per host, so its identity includes the host that runs the call.
        return cfg.sr_uuid or name_uuid("file/%s/%s" % (cfg.host_uuid, cfg.path))

    def connect_volume(self, call, cfg, steps):
        policy.file_directory(cfg.path, policy.setting_list(call, "file_roots"), "data.path")
        return Driver.connect_volume(self, call, cfg, steps)

    def device_config(self, cfg):
        return {"location": cfg.path}
