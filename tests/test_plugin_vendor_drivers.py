"""Third-party drivers dropped in /etc/xenvol/drivers.d load like ours; broken ones are
reported without breaking the others."""
import os
import shutil
import uuid

import pytest

from conftest import REPO, PluginError, plugin, state

EXAMPLE = os.path.join(REPO, "examples", "drivers.d", "acme_gluster.py")


@pytest.fixture
def vendor(ppool):
    for h in ppool.sim.hosts:
        d = os.path.join(h.root, "etc/xenvol/drivers.d")
        shutil.copy(EXAMPLE, d)
        with open(os.path.join(d, "broken.py"), "w") as fh:
            fh.write("import nosuchlibrary\n")
        with open(os.path.join(d, "greedy.py"), "w") as fh:
            fh.write("from xenvol_dom0.drivers.base import Driver\n\n\n"
                     "class Greedy(Driver):\n    volume_types = ('iscsi',)\n")
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
    info = {"driver_volume_type": "acme-gluster", "data": {
        "volfile_server": address, "volume": peers.GLUSTER_VOLUME, "sr_uuid": sr_uuid,
        "vdi_uuid": vdi, "backup_servers": ["gl2.example.com"]}}
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_type(sr) == "glusterfs"
    dconf = xapi.PBD.get_device_config(xapi.SR.get_PBDs(sr)[0])
    assert dconf == {"server": "%s:/%s" % (address, peers.GLUSTER_VOLUME),
                     "backupservers": "gl2.example.com"}
    assert xapi.VDI.get_virtual_size(xapi.VDI.get_by_uuid(vdi)) == str(2 << 30)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(vendor) == before
    info["data"]["volume"] = "gv0/../x"
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(ref))
    assert e.value.details["field"] == "data.volume"
