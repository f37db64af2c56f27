"""SR type -> storage manager, plus the in-memory backing store of the simulated types."""

import threading
import time

from ..errors import XapiError
from . import glusterfs, hba, iscsi, local, nfs, smb

# `xapisim serve --sm-timing`: the factor applied to the real SM's own waits.
TIMINGS = {"real": 1.0, "fast": 0.01}


class StorageManagers:
    def __init__(self, sim, time_scale=TIMINGS["fast"]):
        self.sim = sim
        self.time_scale = float(time_scale)
        self._locks = {}
        self._locks_guard = threading.Lock()
        self.drivers = dict(
            (d.type, d)
            for d in [
                iscsi.ISCSI(sim),
                nfs.NFS(sim),
                smb.SMB(sim),
                hba.HBA(sim),
                glusterfs.GlusterFS(sim),
                local.File(sim),
            ]
            + local.in_memory_types(sim)
        )
        self.store = {}

    def sleep(self, seconds):
        if self.time_scale > 0:
            time.sleep(seconds * self.time_scale)

    def sr_lock(self, host, sr_uuid):
        """SM serialises the exclusive commands on one SR of one host with that host's SR lock
        (sm libs/sm/SRCommand.py _run_locked: sr.lock, a file lock under /var/lock/sm);
        xapi's database stays free meanwhile."""
        with self._locks_guard:
            return self._locks.setdefault((host.uuid, sr_uuid), threading.Lock())

    def driver(self, type_):
        try:
            return self.drivers[type_]
        except KeyError:
            raise XapiError("SR_UNKNOWN_DRIVER", type_) from None

    def backing(self, sr_uuid, create=True):
        """VDIs kept in memory for an SR of a simulated-only type: {vdi uuid: spec}."""
        if create:
            return self.store.setdefault(sr_uuid, {})
        return self.store.get(sr_uuid)

    def _pbd_config(self, host, sr):
        for pbd in self.sim.db.tables["PBD"].values():
            if pbd["host"] == host.ref and self.sim.db.raw("SR", pbd["SR"]) is sr:
                return pbd["device_config"]
        return {}

    def scan(self, host, sr, dconf):
        return self.driver(sr["type"]).scan(host, sr, dconf)

    def vdi_attach(self, host, sr, vdi):
        self.driver(sr["type"]).vdi_attach(host, sr, self._pbd_config(host, sr), vdi)

    def vdi_detach(self, host, sr, vdi):
        self.driver(sr["type"]).vdi_detach(host, sr, self._pbd_config(host, sr), vdi)

    def probe(self, host, type_, dconf):
        return self.driver(type_).probe(host, dconf)
