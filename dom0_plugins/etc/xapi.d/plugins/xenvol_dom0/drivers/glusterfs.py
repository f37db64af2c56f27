"""`glusterfs`: a VHD on XCP-ng's `glusterfs` SR, <volume>/<sr_uuid>/<vdi_uuid>.vhd.

device_config as sm's GlusterFSSR.py reads it: `server` = host:/volume, `backupservers`
(':'-separated, mount option backup-volfile-servers=), `fetchattempts` (fetch-attempts=).
Cinder's removed glusterfs driver gave `export` (host:/volume) + `name` (a `volume-<id>` file
in the volume root) and `options` "-o backup-volfile-servers=h2:h3"; such a file is not
something the SR can open, so sr_uuid and vdi_uuid are required."""

import re

from ..check import host_port
from .base import Config
from .filebased import SharedFileDriver

_VOLUME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class GlusterFSDriver(SharedFileDriver):
    volume_types = ("glusterfs",)
    sr_type = "glusterfs"
    sr_name, root, cinder = "XCP-ng's GlusterFS SR", "<volume>", "glusterfs"
    files = "VHD"

    def validate(self, d):
        self.refuse_other_layouts(d)
        key = "export" if d.has("export") else "server"
        value = d.string(key, max_len=320)
        host, sep, volume = value.partition(":/")
        if not sep:
            raise d.bad(key, "must be host:/volume")
        _host(d, key, host)
        if not _VOLUME.match(volume):
            raise d.bad(key, "names no GlusterFS volume (letters, digits, _ . -)")
        backups = d.string_list("backup_servers") or []
        for opt in _options(d):
            name, _eq, val = opt.partition("=")
            if name != "backup-volfile-servers":
                raise d.bad(
                    "options",
                    "option %r is not passed on by XCP-ng's GlusterFS SR (it "
                    "mounts with backup-volfile-servers and fetch-attempts only)" % name[:32],
                )
            backups = backups + val.split(":")
        for i, b in enumerate(backups):
            if not isinstance(b, str):
                raise d.bad("backup_servers[%d]" % i, "must be a host name or address")
            _host(d, "backup_servers[%d]" % i, b)
        return Config(
            server="%s:/%s" % (host, volume),
            backups=backups,
            attempts=d.integer("fetch_attempts", required=False, low=1, high=100),
            **self.volume(d),
        )

    def device_config(self, cfg):
        dc = {"server": cfg.server}
        if cfg.backups:
            dc["backupservers"] = ":".join(cfg.backups)
        if cfg.attempts:
            dc["fetchattempts"] = str(cfg.attempts)
        return dc


def _host(d, field, value):
    # backupservers is ':'-separated, so an IPv6 address or a port cannot be written there.
    if ":" in value or "[" in value:
        raise d.bad(
            field,
            "must be a host name or IPv4 address (no port, no IPv6: the SR "
            "separates servers with ':')",
        )
    host_port(value, d.name(field), default_port=24007)


def _options(d):
    text = d.string("options", required=False, max_len=512)
    if text is None:
        return []
    text = text.strip()
    if text.startswith("-o"):
        text = text[2:].strip()
    return [o.strip() for o in text.split(",") if o.strip()]
