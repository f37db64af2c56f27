"""Third-party drivers dropped in /etc/xenvol/drivers.d load like ours; broken ones are
reported without breaking the others."""

import os
import shutil
import uuid

import pytest

from conftest import REPO, PluginError, plugin, state
from test_plugin_session import file_volume_in

EXAMPLE = os.path.join(REPO, "examples", "drivers.d", "acme_gluster.py")


@pytest.fixture
def vendor(ppool):
    for h in ppool.sim.hosts:
        d = os.path.join(h.root, "etc/xenvol/drivers.d")
        shutil.copy(EXAMPLE, d)
        with open(os.path.join(d, "broken.py"), "w") as fh:
            fh.write("import nosuchlibrary\n")
        with open(os.path.join(d, "greedy.py"), "w") as fh:
            fh.write(
                "from xenvol_dom0.drivers.base import Driver\n\n\n"
                "class Greedy(Driver):\n    volume_types = ('iscsi',)\n"
            )
        with open(os.path.join(d, "README.txt"), "w") as fh:
            fh.write("not a driver\n")
    return ppool


def test_vendor_driver_is_listed_and_failures_reported(vendor):
    xapi = vendor.session().xenapi
    out = plugin(xapi, vendor.host(0), "list_drivers")
    types = dict((d["driver_volume_type"], d) for d in out["drivers"])
    assert types["acme-gluster"]["origin"].startswith("drivers.d ")
    assert types["iscsi"]["origin"].startswith("built-in ")
    failed = dict((os.path.basename(f["file"]), f["error"]) for f in out["failed"])
    assert sorted(failed) == ["broken.py", "greedy.py"]
    assert "nosuchlibrary" in failed["broken.py"]
    assert "already provided" in failed["greedy.py"]


def test_vendor_driver_attaches(vendor, peers):
    from test_sim_gluster import gluster_sr_dir

    xapi = vendor.session().xenapi
    sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
    gluster_sr_dir(peers, sr_uuid, [(vdi, 2 << 30)])  # on a real glusterd's volume
    before = state(vendor)
    ref = xapi.VM.get_by_name_label("vm-3")[0]
    host = [h for h in vendor.sim.hosts if h.ref == xapi.VM.get_resident_on(ref)][0]
    address = peers.gluster.address
    info = {
        "driver_volume_type": "acme-gluster",
        "data": {
            "volfile_server": address,
            "volume": peers.GLUSTER_VOLUME,
            "sr_uuid": sr_uuid,
            "vdi_uuid": vdi,
            "backup_servers": ["gl2.example.com"],
        },
    }
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_type(sr) == "glusterfs"
    dconf = xapi.PBD.get_device_config(xapi.SR.get_PBDs(sr)[0])
    assert dconf == {
        "server": "%s:/%s" % (address, peers.GLUSTER_VOLUME),
        "backupservers": "gl2.example.com",
    }
    assert xapi.VDI.get_virtual_size(xapi.VDI.get_by_uuid(vdi)) == str(2 << 30)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(vendor) == before
    info["data"]["volume"] = "gv0/../x"
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    assert e.value.details["field"] == "data.volume"


MAPPING_DRIVER = '''
"""A vendor driver with a step of its own (maps the volume on its array), undone by name."""
import os

from xenvol_dom0.drivers.file import FileDriver
from xenvol_dom0.undo import compensation

MAPS = "/var/lib/acme-maps"


@compensation("acme.unmap")
def unmap(call, volume):
    path = os.path.join(MAPS, volume)
    if os.path.exists(path):
        os.unlink(path)


class AcmeMapped(FileDriver):
    volume_types = ("acme-mapped",)

    def connect_volume(self, call, cfg, steps):
        with steps.change("map the volume", "acme.unmap", volume=cfg.vdi_uuid):
            if not os.path.isdir(MAPS):
                os.makedirs(MAPS)
            open(os.path.join(MAPS, cfg.vdi_uuid), "w").close()
        return FileDriver.connect_volume(self, call, cfg, steps)
'''


def with_vendor_driver(pool, filename, source, volume_type):
    """vm-1's host with `source` as its /etc/xenvol/drivers.d/<filename>, and a file volume of
    `volume_type` there: (xapi, the VM's ref, its host, connection_info)."""
    xapi = pool.session().xenapi
    ref = xapi.VM.get_by_name_label("vm-1")[0]
    host = [h for h in pool.sim.hosts if h.ref == xapi.VM.get_resident_on(ref)][0]
    with open(os.path.join(host.root, "etc/xenvol/drivers.d", filename), "w") as fh:
        fh.write(source)
    return xapi, ref, host, file_volume_in([host.root], volume_type)


def test_vendor_compensation_runs_on_failure_and_after_a_kill(ppool):
    """A vendor's own step is journaled by the name of its compensation: a failure later in the
    call undoes it, and so does the next call after the plugin was killed (recovery loads the
    vendor's file to find the compensation)."""
    xapi, ref, host, info = with_vendor_driver(
        ppool, "acme_mapped.py", MAPPING_DRIVER, "acme-mapped"
    )
    mapped = os.path.join(host.root, "var/lib/acme-maps", info["data"]["vdi_uuid"])
    before = state(ppool)
    ppool.admin.inject_fault("VBD.create", ["INTERNAL_ERROR", "injected"], {"caller": "plugin"})
    with pytest.raises(PluginError):
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    ppool.admin.clear()
    assert not os.path.exists(mapped) and state(ppool) == before
    ppool.admin.kill_plugin("VBD.create", {"when": "before", "host": host.uuid})
    with pytest.raises(PluginError):
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    ppool.admin.clear()
    assert os.path.exists(mapped)  # killed: nothing undone yet
    out = plugin(xapi, host, "recover")
    assert len(out["recovered"]) == 1 and out["failed"] == []
    assert not os.path.exists(mapped) and state(ppool) == before


UNPACKING_DRIVER = '''
"""A vendor driver written before connect_volume returned a Connected: it unpacks the
(sr, vdi) of the base class and returns a tuple of its own."""
from xenvol_dom0.drivers.file import FileDriver


class AcmeUnpacked(FileDriver):
    volume_types = ("acme-unpacked",)

    def connect_volume(self, call, cfg, steps):
        sr, vdi = FileDriver.connect_volume(self, call, cfg, steps)
        return sr, vdi
'''


def test_a_driver_returning_a_plain_sr_and_vdi_still_attaches(ppool):
    """Driver.connect_volume's result unpacks as (sr, vdi), as it always did; a plain tuple
    returned instead is still attached and released (storage.in_use checks the SR alone)."""
    xapi, ref, host, info = with_vendor_driver(
        ppool, "acme_unpacked.py", UNPACKING_DRIVER, "acme-unpacked"
    )
    before = state(ppool)
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    assert out["vdi_uuid"] == info["data"]["vdi_uuid"] and out["plugged"] is True
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before
