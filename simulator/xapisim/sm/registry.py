"""SR type -> storage manager, plus the in-memory backing store of the simulated types."""
from ..errors import XapiError
from . import iscsi, local, nfs


class StorageManagers(object):
    def __init__(self, sim):
        self.sim = sim
        self.drivers = dict((d.type, d) for d in
                            [iscsi.ISCSI(sim), nfs.NFS(sim), local.File(sim)] +
                            local.in_memory_types(sim))
        self.store = {}

    def driver(self, type_):
        try:
            return self.drivers[type_]
        except KeyError:
            raise XapiError("SR_UNKNOWN_DRIVER", type_)

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
