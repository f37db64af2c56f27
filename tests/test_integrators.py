"""Issue 13, what integrators need: extend, connector info, placement and migration, names
and tags, adapters. Through the real path (client or XenAPI -> simulator -> exec'd plugin ->
real tgt target); assertions on the pool's state."""

import json
import os

import pytest

import xenvol
from conftest import PluginError, plugin
from xenvol import errors

MiB = 1 << 20


def ci(peers, iqn, lun=1, **extra):
    return peers.iscsi_info(iqn, lun, **dict({"volume_id": "vol-%s" % lun}, **extra))


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
    assert (
        xapi.host.call_plugin(master, "on-slave", "refresh_lun_size_by_SCSIid", {"SCSIid": scsi_id})
        == "True"
    )
    xapi.SR.scan(sr)
    assert int(xapi.VDI.get_virtual_size(vdi)) == 16 * MiB
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])


def test_extend_volume_refreshes_every_pbd_host_then_scans(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    vm_ref, vm_uuid, host = running(ppool, xapi, "vm-3")
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
    # Volumes only: another disk of the pool is not xenvol's to rescan.
    root = xapi.VBD.get_VDI(
        [v for v in xapi.VM.get_VBDs(vm_ref) if xapi.VBD.get_userdevice(v) == "0"][0]
    )
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "extend_volume", vdi_uuid=xapi.VDI.get_uuid(root))
    assert e.value.code == "XENVOL_POLICY_REFUSED"


# ---------------------------------------------------------------------- client and CLI
@pytest.fixture
def client(ppool):
    c = xenvol.Client(ppool.url, "root", ppool.info["password"])
    yield c
    c.close()


def drop_root_disk(xapi, vm_ref):
    """The seeded VMs boot from local storage, which VM.pool_migrate cannot move (it needs
    VM.migrate_send): leave them with their xenvol disks only."""
    for vbd in xapi.VM.get_VBDs(vm_ref):
        if xapi.VBD.get_userdevice(vbd) == "0":
            xapi.VBD.unplug(vbd)
            xapi.VBD.destroy(vbd)


def pbd_hosts(xapi, sr_uuid):
    sr = xapi.SR.get_by_uuid(sr_uuid)
    return sorted(
        xapi.host.get_uuid(xapi.PBD.get_host(p))
        for p in xapi.SR.get_PBDs(sr)
        if xapi.PBD.get_currently_attached(p)
    )


def test_client_extend_and_adapters_report_the_new_size(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    info = ci(peers, iqn)
    driver = xenvol.ComputeVolumeDriver(client)
    att = driver.connect_volume(info, {"uuid": running(ppool, xapi, "vm-1")[1]})
    assert info["data"]["xenvol"]["vbd_uuid"] == att["vbd_uuid"]
    peers.iscsi.resize_lun(iqn, 1, 12)
    with pytest.raises(errors.BackendFailure):
        driver.extend_volume(info, "vm-1", 64 * MiB)
    out = client.extend(vdi=att["vdi_uuid"])
    assert out["grew"] is False and out["new_size"] == 12 * MiB  # the last call saw it
    peers.iscsi.resize_lun(iqn, 1, 16)
    assert driver.extend_volume(info, "vm-1", 16 * MiB) == 16 * MiB
    assert int(xapi.VDI.get_virtual_size(xapi.VDI.get_by_uuid(att["vdi_uuid"]))) == 16 * MiB
    assert [a["vbd_uuid"] for a in driver.disconnect_volume(info, "vm-1")] == [att["vbd_uuid"]]
    assert xapi.SR.get_all_records_where('field "uuid" = "%s"' % att["sr_uuid"]) == {}


def test_connector_names_each_host_a_volume_is_plugged_on(ppool, client):
    xapi = ppool.session().xenapi
    member = ppool.host(2)
    # A real host's kernel lists its FC ports under /sys/class/fc_host from boot; the
    # simulated fabric writes them at a rescan, which SR.probe type=hba makes.
    xapi.SR.probe(member.ref, {}, "hba", {})
    nvme = os.path.join(member.root, "etc/nvme")
    os.makedirs(nvme, exist_ok=True)
    with open(os.path.join(nvme, "hostnqn"), "w") as fh:
        fh.write("nqn.2014-08.org.nvmexpress:uuid:%s\n" % member.uuid)
    vm_ref = xapi.VM.get_by_name_label("vm-3")[0]  # runs on xs02
    out = client.connector(vm="vm-3")
    vm_host = xapi.VM.get_resident_on(vm_ref)
    assert out["plug_hosts"] == [xapi.host.get_uuid(vm_host), ppool.sim.master.uuid]
    first = out["connector"]
    assert first["initiator"] == xapi.host.get_other_config(vm_host)["iscsi_iqn"]
    assert first["ip"] == xapi.host.get_address(vm_host) and "wwpns" not in first
    one = client.connector(host=member.uuid)["hosts"][0]
    assert one["wwpns"] == ppool.admin.fc_fabric()[member.uuid]
    assert one["nqn"] == "nqn.2014-08.org.nvmexpress:uuid:%s" % member.uuid
    every = client.connector(vm="vm-3", placement="pool")["plug_hosts"]
    assert sorted(every) == sorted(h.uuid for h in ppool.sim.hosts)
    props = xenvol.XenConnector(client, "iscsi", instance="vm-3").get_connector_properties()
    assert props["initiator"] == first["initiator"] and len(props["xenvol_hosts"]) == 2


def test_vdi_and_vbd_say_which_volume_with_backup_tags(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2), size_mb=8)
    att = client.attach(ci(peers, iqn, volume_id="7f3c", display_name="db-data"), "vm-1")
    vdi = xapi.VDI.get_by_uuid(att.vdi_uuid)
    assert xapi.VDI.get_name_label(vdi) == "[NOBAK][NOSNAP] db-data"
    assert xapi.VDI.get_name_description(vdi) == "xenvol iscsi volume 7f3c"
    other = xapi.VBD.get_other_config(xapi.VBD.get_by_uuid(att.vbd_uuid))
    assert (other["xenvol-volume-id"], other["xenvol-volume-name"]) == ("7f3c", "db-data")
    # Operator tags from xenvol.conf; a VDI someone else named keeps its name.
    host = [h for h in ppool.sim.hosts if h.uuid == att.host_uuid][0]
    conf = os.path.join(host.root, "etc/xenvol/xenvol.conf")
    settings = json.load(open(conf))
    with open(conf, "w") as fh:
        json.dump(dict(settings, vdi_name_tags=["[NOBAK]"]), fh)
    second = client.attach(ci(peers, iqn, lun=2, volume_id="8a1e"), "vm-1")
    assert xapi.VDI.get_name_label(xapi.VDI.get_by_uuid(second.vdi_uuid)) == "[NOBAK] volume-8a1e"
    client.detach(attachment=second)
    xapi.VDI.set_name_label(vdi, "kept by the admin")
    assert client.attach(ci(peers, iqn, volume_id="7f3c"), "vm-1").vbd_uuid == att.vbd_uuid
    assert xapi.VDI.get_name_label(vdi) == "kept by the admin"
    client.detach(attachment=att)


# ---------------------------------------------------------------------- agility
def mobile_vm(ppool, xapi, name="vm-3"):
    """A running VM on a member host, with no local disk (see drop_root_disk)."""
    ref, vm_uuid, host = running(ppool, xapi, name)
    assert host.index == 1
    drop_root_disk(xapi, ref)
    return ref, vm_uuid, host


def test_migrate_plugs_the_destination_then_releases_the_source(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    ref, vm_uuid, source = mobile_vm(ppool, xapi)
    att = client.attach(ci(peers, iqn), vm_uuid)
    master, dest = ppool.sim.master.uuid, ppool.host(2)
    assert pbd_hosts(xapi, att.sr_uuid) == sorted([master, source.uuid])
    # Without xenvol, XAPI refuses: the destination does not see the SR.
    with pytest.raises(Exception) as e:
        xapi.VM.pool_migrate(ref, dest.ref, {"live": "true"})
    assert "VM_REQUIRES_SR" in str(e.value)
    out = client.migrate(vm_uuid, dest.uuid)
    assert (out["source"], out["destination"], out["prepared"]) == (
        source.uuid,
        dest.uuid,
        [att.sr_uuid],
    )
    assert xapi.VM.get_resident_on(ref) == dest.ref
    assert xapi.VBD.get_currently_attached(xapi.VBD.get_by_uuid(att.vbd_uuid))
    assert pbd_hosts(xapi, att.sr_uuid) == sorted([master, dest.uuid])
    # Back to the master: the master's PBD stays (it scans shared SRs), the member's goes.
    client.migrate(vm_uuid, ppool.sim.master.uuid)
    assert pbd_hosts(xapi, att.sr_uuid) == [master]
    client.detach(vm=vm_uuid, mountpoint=att.device)
    assert xapi.SR.get_all_records_where('field "uuid" = "%s"' % att.sr_uuid) == {}


def test_a_failed_migration_releases_the_destination(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    ref, vm_uuid, source = mobile_vm(ppool, xapi)
    att = client.attach(ci(peers, iqn), vm_uuid)
    before = pbd_hosts(xapi, att.sr_uuid)
    ppool.admin.inject_fault(
        "VM.pool_migrate", ["VM_MIGRATE_FAILED", ref, source.ref, ppool.host(2).ref, "injected"]
    )
    with pytest.raises(errors.XapiError) as e:
        client.migrate(vm_uuid, ppool.host(2).uuid)
    assert e.value.code == "VM_MIGRATE_FAILED"
    assert xapi.VM.get_resident_on(ref) == source.ref
    assert pbd_hosts(xapi, att.sr_uuid) == before
    client.detach(attachment=att)


def test_evacuate_needs_pool_wide_placement(ppool, peers, client):
    """xapi_host.ml compute_evacuation_plan_no_wlb: a VM must be able to boot on every other
    enabled host, so per-host placement blocks host-evacuate; pool-wide placement does not."""
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2), size_mb=8)
    ref, vm_uuid, source = mobile_vm(ppool, xapi)
    att = client.attach(ci(peers, iqn), vm_uuid)
    with pytest.raises(Exception) as e:
        xapi.host.evacuate(source.ref)
    assert "VM_REQUIRES_SR" in str(e.value)
    assert xapi.VM.get_resident_on(ref) == source.ref
    client.detach(attachment=att)
    att = client.attach(ci(peers, iqn, lun=2), vm_uuid, placement="pool")
    assert pbd_hosts(xapi, att.sr_uuid) == sorted(h.uuid for h in ppool.sim.hosts)
    xapi.host.evacuate(source.ref)
    assert xapi.VM.get_resident_on(ref) != source.ref
    assert xapi.VBD.get_currently_attached(xapi.VBD.get_by_uuid(att.vbd_uuid))
    client.detach(attachment=att)
    assert xapi.SR.get_all_records_where('field "uuid" = "%s"' % att.sr_uuid) == {}


def protect(ppool, ref):
    # VM.set_ha_restart_priority / set_ha_always_run are not modelled: set the fields.
    with ppool.sim.db.lock:
        ppool.sim.db.raw("VM", ref).update(ha_always_run=True, ha_restart_priority="restart")


def test_ha_restarts_a_vm_whose_volumes_are_pool_wide(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    ref, vm_uuid, source = mobile_vm(ppool, xapi)
    att = client.attach(ci(peers, iqn), vm_uuid, placement="pool")
    protect(ppool, ref)
    restarted = ppool.admin.ha_host_failed(source.uuid)
    assert restarted[vm_uuid] not in ("", source.uuid)
    assert xapi.VM.get_power_state(ref) == "Running"
    assert xapi.host.get_uuid(xapi.VM.get_resident_on(ref)) == restarted[vm_uuid]
    assert xapi.VBD.get_currently_attached(xapi.VBD.get_by_uuid(att.vbd_uuid))


def test_ha_leaves_a_per_host_vm_halted(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    ref, vm_uuid, source = mobile_vm(ppool, xapi)
    client.attach(ci(peers, iqn), vm_uuid)
    protect(ppool, ref)
    assert ppool.admin.ha_host_failed(source.uuid) == {vm_uuid: ""}
    assert xapi.VM.get_power_state(ref) == "Halted"


def test_reconcile_plugs_pool_wide_srs_on_hosts_that_lack_them(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    att = client.attach(ci(peers, iqn), "vm-1", placement="pool")
    sr = xapi.SR.get_by_uuid(att.sr_uuid)
    member = ppool.host(2)
    pbd = [p for p in xapi.SR.get_PBDs(sr) if xapi.PBD.get_host(p) == member.ref][0]
    xapi.PBD.unplug(pbd)
    assert client.reconcile(op_id="rc-1") == [
        {"sr_uuid": att.sr_uuid, "host_uuid": member.uuid, "action": "plug", "op_id": "rc-1"}
    ]
    assert member.uuid not in pbd_hosts(xapi, att.sr_uuid)
    client.reconcile(apply=True)
    assert member.uuid in pbd_hosts(xapi, att.sr_uuid) and client.reconcile() == []
    client.detach(attachment=att)


# ---------------------------------------------------------------------- simulator behaviours
def test_sim_vdi_set_name_label_needs_the_sr_plugged(ppool, peers):
    """xapi_vdi.ml set_name_label -> update: sm.ml assert_pbd_is_plugged (SR_HAS_NO_PBDS)."""
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), size_mb=8)
    out = plugin(xapi, ppool.host(0), "connect_volume", connection_info=ci(peers, iqn))
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    xapi.VDI.set_name_description(vdi, "d")
    assert xapi.VDI.get_name_description(vdi) == "d"
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    for pbd in xapi.SR.get_PBDs(sr):
        xapi.PBD.unplug(pbd)
    with pytest.raises(Exception) as e:
        xapi.VDI.set_name_label(vdi, "x")
    assert "SR_HAS_NO_PBDS" in str(e.value)
    for pbd in xapi.SR.get_PBDs(sr):
        xapi.PBD.plug(pbd)
    plugin(xapi, ppool.host(0), "disconnect_volume", connection_info=ci(peers, iqn))


def test_sim_on_slave_plugin_answers_as_sm_does(ppool):
    """sm scripts/plugins/on-slave: refresh_lun_size_by_SCSIid is "True" for a host without
    the device; an unknown function is XenAPIPlugin's UNKNOWN_XENAPI_PLUGIN_FUNCTION."""
    xapi = ppool.session().xenapi
    host = ppool.host(1).ref
    assert (
        xapi.host.call_plugin(
            host, "on-slave", "refresh_lun_size_by_SCSIid", {"SCSIid": "36001405abcdef"}
        )
        == "True"
    )
    with pytest.raises(Exception) as e:
        xapi.host.call_plugin(host, "on-slave", "nope", {})
    assert "UNKNOWN_XENAPI_PLUGIN_FUNCTION" in str(e.value)
    with pytest.raises(Exception) as e:
        xapi.host.call_plugin(host, "on-slave", "refresh_lun_size_by_SCSIid", {})
    assert "XENAPI_PLUGIN_FAILURE" in str(e.value)


def test_a_failed_attach_gives_the_vdi_its_name_back(ppool, peers, client):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2), size_mb=8)
    keep = client.attach(ci(peers, iqn), "vm-1")  # keeps the SR through the failure
    ppool.admin.inject_fault("VBD.create", ["INTERNAL_ERROR", "injected"], {"caller": "plugin"})
    with pytest.raises(errors.XenvolError):
        client.attach(ci(peers, iqn, lun=2, display_name="second"), "vm-1")
    sr = xapi.SR.get_by_uuid(keep.sr_uuid)
    lun2 = [v for v in xapi.SR.get_VDIs(sr) if xapi.VDI.get_sm_config(v)["LUNid"] == "2"][0]
    assert xapi.VDI.get_name_label(lun2) == ""
    assert "xenvol-named" not in xapi.VDI.get_other_config(lun2)
    client.detach(attachment=keep)
