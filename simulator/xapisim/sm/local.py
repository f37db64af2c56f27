"""`file` (a directory of VHD/raw files under the host root) and in-memory SR types."""

import os

from .base import StorageManager
from .errors import raw_error, sm_error
from .vhdfiles import vdi_record


class File(StorageManager):
    """FileSR: dconf `location` is a directory; each <uuid>.vhd|.raw in it is a VDI."""

    type = "file"
    capabilities = (
        "SR_PROBE",
        "SR_UPDATE",
        "VDI_CREATE",
        "VDI_DELETE",
        "VDI_ATTACH",
        "VDI_DETACH",
        "VDI_CLONE",
        "VDI_SNAPSHOT",
        "VDI_RESIZE",
    )
    required = (("location", "ConfigLocationMissing"),)

    def _dir(self, host, dconf):
        self.check_config(dconf)
        path = os.path.normpath(dconf["location"])
        if not path.startswith("/"):
            raise sm_error("FileSRCreate", "location must be an absolute path")
        return host.path(path)

    def attach(self, host, sr, dconf):
        if not os.path.isdir(self._dir(host, dconf)):
            raise sm_error("FileSRCreate", "%s: No such directory" % dconf["location"])

    def scan(self, host, sr, dconf):
        base = self._dir(host, dconf)
        if not os.path.isdir(base):
            raise sm_error("SRUnavailable", "%s: No such directory" % dconf["location"])
        out = []
        for name in sorted(os.listdir(base)):
            path = os.path.join(base, name)
            if os.path.isfile(path):
                vdi = vdi_record(name, os.path.getsize(path), lambda path=path: _tail(path))
                if vdi:
                    out.append(vdi)
        return out

    def vdi_attach(self, host, sr, dconf, vdi):
        base = self._dir(host, dconf)
        if not any(
            os.path.exists(os.path.join(base, vdi["location"] + e)) for e in (".vhd", ".raw")
        ):
            raise sm_error("VDIUnavailable", "%s is missing" % vdi["location"])


def _tail(path):
    with open(path, "rb") as fh:
        fh.seek(max(os.path.getsize(path) - 512, 0))
        return fh.read(512)


class InMemory(StorageManager):
    """SR types whose storage is not simulated for real: dconf is validated as the SM does,
    VDIs live in the simulator's backing store (filled through the admin API)."""

    capabilities = ("SR_PROBE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH")

    def __init__(self, sim, type_, required, capabilities=None, attach_error=None):
        StorageManager.__init__(self, sim)
        self.type = type_
        self.required = required
        if capabilities:
            self.capabilities = capabilities
        self.attach_error = attach_error

    def attach(self, host, sr, dconf):
        self.check_config(dconf)
        for key in dconf:
            if key.endswith("password_secret"):
                self.secret(dconf, key[: -len("_secret")])
        store = self.sim.sm.backing(sr["uuid"], create=False)
        if store is None:
            # Nothing is known at that location: the mount or login fails as the SM reports it.
            raise self.attach_error() if self.attach_error else sm_error("SRUnavailable")

    managed = True

    def scan(self, host, sr, dconf):
        store = self.sim.sm.backing(sr["uuid"], create=False) or {}
        return [self._vdi(uuid, spec) for uuid, spec in sorted(store.items())]

    def _vdi(self, uuid, spec):
        return {
            "uuid": uuid,
            "location": spec.get("location", uuid),
            "virtual_size": str(spec.get("virtual_size", "0")),
            "physical_utilisation": "0",
            "managed": self.managed,
            "type": "user",
            "sm_config": dict(spec.get("sm_config", {})),
        }

    def vdi_attach(self, host, sr, dconf, vdi):
        store = self.sim.sm.backing(sr["uuid"], create=False) or {}
        if vdi["uuid"] not in store:
            raise sm_error("VDIUnavailable", "%s is missing" % vdi["uuid"])


class CephFS(InMemory):
    """xcp-ng sm drivers/CephFSSR.py load(): `server` missing -> ConfigServerMissing, but
    `serverpath` is read as self.dconf['serverpath']: a KeyError, which SRCommand reports as
    the generic fault 1200 with str(exception)."""

    def check_config(self, dconf):
        InMemory.check_config(self, dconf)
        if "serverpath" not in dconf:
            raise raw_error(1200, "'serverpath'")


def in_memory_types(sim):
    """The other SR types xenvol may drive, with their required keys (SM load-time checks)."""
    mount_failure = lambda: raw_error(12, "mount failed")  # noqa: E731 CephFS/MooseFS style
    return [
        InMemory(sim, "ext", (("device", "ConfigDeviceMissing"),)),
        InMemory(sim, "lvm", (("device", "ConfigDeviceMissing"),)),
        InMemory(
            sim,
            "lvmoiscsi",
            (
                ("target", "ConfigTargetMissing"),
                ("targetIQN", "ConfigTargetIQNMissing"),
                ("SCSIid", "ConfigSCSIid"),
            ),
        ),
        InMemory(sim, "lvmohba", (("SCSIid", "ConfigSCSIid"),)),
        CephFS(sim, "cephfs", (("server", "ConfigServerMissing"),), attach_error=mount_failure),
        InMemory(
            sim,
            "moosefs",
            (("masterhost", "ConfigServerMissing"), ("rootpath", "ConfigServerPathMissing")),
            attach_error=mount_failure,
        ),
        InMemory(sim, "iso", (("location", "ConfigLocationMissing"),)),
        InMemory(
            sim,
            "udev",
            (("location", "ConfigLocationMissing"),),
            capabilities=("VDI_INTRODUCE", "VDI_ATTACH", "VDI_DETACH"),
        ),
        InMemory(sim, "dummy", ()),
    ]
