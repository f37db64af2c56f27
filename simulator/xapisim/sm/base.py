"""What every simulated storage manager shares: config checks, secrets, loopback guard."""

import ipaddress
import socket
from typing import Optional, Tuple

from ..errors import XapiError
from .errors import sm_error


class StorageManager:
    """One SR type. Subclasses override attach/detach/scan/vdi_attach as their SM does."""

    type: Optional[str] = None
    capabilities: Tuple[str, ...] = ("SR_PROBE", "VDI_ATTACH", "VDI_DETACH")
    # (key, SM error name) checked in order before anything else, like the SM's load().
    required: Tuple[Tuple[str, str], ...] = ()

    def __init__(self, sim):
        self.sim = sim

    def check_config(self, dconf):
        for key, error in self.required:
            if not dconf.get(key):
                raise sm_error(error)

    def secret(self, dconf, key):
        """A password from <key>_secret (preferred) or <key>, as SM's util.get_secret does."""
        ref = dconf.get(key + "_secret")
        if ref:
            for rec in self.sim.db.tables["secret"].values():
                if rec["uuid"] == ref:
                    return rec["value"]
            raise sm_error("InvalidSecret", "Unable to look up secret [%s]" % ref)
        return dconf.get(key)

    def attach(self, host, sr, dconf):
        self.check_config(dconf)

    def detach(self, host, sr, dconf):
        pass

    def scan(self, host, sr, dconf):
        return []

    def vdi_attach(self, host, sr, dconf, vdi):
        pass

    def vdi_detach(self, host, sr, dconf, vdi):
        pass

    def introduce(self, host, sr, dconf, uuid, location, sm_config):
        raise sm_error("VDIUnavailable")

    def vdi_create(self, host, sr_ref, dconf, size):
        """The ref of the VDI the SM made or claimed. Not modelled for image-file types:
        refused, the stricter answer."""
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr_ref)

    def vdi_delete(self, host, sr_ref, dconf, vdi_ref):
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr_ref)

    def after_attach(self, host, sr, pbd_rec):
        """Side effects of sr_attach on the PBD record (the iSCSI SM writes iscsi_sessions)."""

    def after_detach(self, host, sr, pbd_rec):
        pass

    def delay(self, seconds):
        """A real SM wait (BaseISCSI's settle and scan sleeps), scaled by the pool's SM timing."""
        self.sim.sm.sleep(seconds)

    def probe(self, host, dconf):
        raise sm_error("SMGeneral", "Operation 'sr_probe' not supported by this SR type")


def loopback_address(server, error, port=None):
    """Resolve a storage server and refuse anything that is not loopback.

    The simulator only ever talks to peers on this machine; any other address fails the way
    an unreachable server does, without a packet being sent."""
    try:
        infos = socket.getaddrinfo(server.strip("[]"), port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise sm_error("DNSError", "Unable to resolve %s" % server) from None
    addr = str(infos[0][4][0])
    if not ipaddress.ip_address(addr.split("%")[0]).is_loopback:
        raise sm_error(error, "%s is not reachable from the simulated host" % server)
    return addr
