"""`cephfs`: a VHD on XCP-ng's `cephfs` SR, <serverpath>/<sr_uuid>/<vdi_uuid>.vhd.

device_config as sm's CephFSSR.py reads it: `server` (monitor, or a comma list), `serverpath`,
`serverport` (default 6789), `options` passed to mount -t ceph as they are (e.g.
name=admin,secretfile=/etc/ceph/admin.secret). device_config is plain text in the PBD, so the
key must be a secretfile on every host: an inline `secret=` is refused. Cinder has no CephFS
volume driver; its `rbd` volumes are RBD images, which no stock XenServer/XCP-ng SR serves."""

import posixpath
import re

from ..check import host_port
from .base import Config
from .filebased import SharedFileDriver

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CephFSDriver(SharedFileDriver):
    volume_types = ("cephfs",)
    sr_type = "cephfs"

    def validate(self, d):
        servers = d.raw("server")
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",")]
        if not isinstance(servers, list) or not servers or len(servers) > 16:
            raise d.bad("server", "must be a monitor address or a list of them")
        for i, s in enumerate(servers):
            field = "server[%d]" % i
            if not isinstance(s, str) or not s or len(s) > 253:
                raise d.bad(field, "must be a host name or address")
            if s.startswith("[") or (":" in s and s.count(":") == 1):
                raise d.bad(field, "takes no port: the SR adds serverport to the last server")
            host_port(s, d.name(field), default_port=6789)
        name = d.string("name", required=False, max_len=64) or "admin"
        if not _NAME.match(name):
            raise d.bad("name", "is not a Ceph client name")
        if d.has("secret") or d.has("key"):
            raise d.bad(
                "secret" if d.has("secret") else "key",
                "cannot be used: XCP-ng's CephFS "
                "SR passes options as plain PBD device_config; put the key in a file on "
                "every host and give its path as secretfile",
            )
        secretfile = d.path("secretfile", required=False)
        return Config(
            servers=servers,
            serverpath=d.path("serverpath"),
            port=d.integer("serverport", required=False, default=6789, low=1, high=65535),
            client=name,
            secretfile=secretfile,
            **self.volume(d),
        )

    def device_config(self, cfg):
        options = "name=%s" % cfg.client
        if cfg.secretfile:
            options += ",secretfile=%s" % posixpath.normpath(cfg.secretfile)
        return {
            "server": ",".join(cfg.servers),
            "serverpath": cfg.serverpath,
            "serverport": str(cfg.port),
            "options": options,
        }
