"""Issue 13, what integrators need: extend, connector info, placement and migration, names
and tags, adapters. Through the real path (client or XenAPI -> simulator -> exec'd plugin ->
real tgt target); assertions on the pool's state."""
import json

import pytest

from conftest import PluginError, plugin

MiB = 1 << 20


def ci(peers, iqn, lun=1, **extra):
    data = {"target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": lun,
            "volume_id": "vol-%s" % lun}
    data.update(extra)
    return {"driver_volume_type": "iscsi", "data": data}


def running(pool, xapi, name):
    ref = xapi.VM.get_by_name_label(name)[0]
    host = [h for h in pool.sim.hosts if h.ref == xapi.VM.get_resident_on(ref)][0]
    return ref, xapi.VM.get_uuid(ref), host


# ---------------------------------------------------------------------- extend
def test_sr_scan_alone_keeps_a_grown_luns_old_size(ppool, peers):
    """sm: a scan reads the host's device size (LUNperVDI.RAWVDI._query, scsiutil.getsize);
    only a device rescan (on-slave refresh_lun_size_by_SCSIid) updates it."""
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    _ref, vm_uuid, host = running(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    assert int(xapi.VDI.get_virtual_size(vdi)) == 8 * MiB
    peers.iscsi.resize_lun(iqn, 1, 16)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    xapi.SR.scan(sr)
    assert int(xapi.VDI.get_virtual_size(vdi)) == 8 * MiB
    scsi_id = xapi.VDI.get_sm_config(vdi)["SCSIid"]
    master = ppool.sim.master.ref
    assert xapi.host.call_plugin(master, "on-slave", "refresh_lun_size_by_SCSIid",
                                 {"SCSIid": scsi_id}) == "True"
    xapi.SR.scan(sr)
    assert int(xapi.VDI.get_virtual_size(vdi)) == 16 * MiB
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])


def test_extend_volume_refreshes_every_pbd_host_then_scans(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    _ref, vm_uuid, host = running(ppool, xapi, "vm-3")
    assert host.index != 0
    out = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    same = plugin(xapi, host, "extend_volume", connection_info=ci(peers, iqn))
    assert same["grew"] is False and same["new_size"] == 8 * MiB
    peers.iscsi.resize_lun(iqn, 1, 24)
    grown = plugin(xapi, host, "extend_volume", connection_info=ci(peers, iqn))
    assert (grown["old_size"], grown["new_size"], grown["grew"]) == (8 * MiB, 24 * MiB, True)
    assert grown["refreshed_hosts"] == [ppool.sim.master.uuid, host.uuid]
    assert grown["vbds"][0]["vm_uuid"] == vm_uuid and "new size" in grown["vbds"][0]["sees"]
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    assert int(xapi.VDI.get_virtual_size(vdi)) == 24 * MiB
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "extend_volume", connection_info=ci(peers, iqn))
    assert e.value.code == "XENVOL_VDI_NOT_FOUND"
