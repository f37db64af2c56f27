"""VM power operations and the VBD lifecycle in the simulator."""
import pytest
import XenAPI

from test_sim_wire import fails


def vbd_rec(vm, vdi, userdevice="autodetect", mode="RW", **kw):
    rec = {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False, "mode": mode,
           "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
           "qos_algorithm_params": {}}
    rec.update(kw)
    return rec


@pytest.fixture
def disk(pool, xapi):
    """A spare VDI on the master's local SR."""
    sr = [r for r, v in xapi.SR.get_all_records().items() if v["type"] == "ext"
          and xapi.PBD.get_host(v["PBDs"][0]) == pool.host(0).ref][0]
    uuid = "11111111-2222-3333-4444-555555555555"
    pool.admin.put_vdi(xapi.SR.get_uuid(sr), uuid, {"virtual_size": str(1 << 30)})
    xapi.SR.scan(sr)
    return xapi.VDI.get_by_uuid(uuid)


def test_seeded_pool(pool, xapi):
    vms = dict((v["name_label"], (r, v)) for r, v in xapi.VM.get_all_records().items()
               if not v["is_control_domain"])
    assert sorted(vms) == ["vm-1", "vm-2", "vm-3", "vm-4"]
    assert vms["vm-1"][1]["power_state"] == "Running"
    assert vms["vm-2"][1]["power_state"] == "Halted"
    assert vms["vm-1"][1]["resident_on"] in xapi.host.get_all()
    assert vms["vm-2"][1]["resident_on"] == "OpaqueRef:NULL"
    dom0 = [v for v in xapi.VM.get_all_records().values() if v["is_control_domain"]]
    assert len(dom0) == 3


def test_start_and_shutdown(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    fails("VM_BAD_POWER_STATE", xapi.VM.clean_shutdown, vm)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"
    assert xapi.VM.get_resident_on(vm) == xapi.VM.get_affinity(vm)
    d = fails("VM_BAD_POWER_STATE", xapi.VM.start, vm, False, False)
    assert d[2:] == ["halted", "running"]
    xapi.VM.hard_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"
    assert xapi.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    xapi.VM.start_on(vm, pool.host(0).ref, False, False)
    assert xapi.VM.get_resident_on(vm) == pool.host(0).ref
    xapi.VM.clean_shutdown(vm)


def test_start_on_a_host_without_the_sr_is_refused(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]  # its disk is on host 0's local SR
    fails("VM_REQUIRES_SR", xapi.VM.start_on, vm, pool.host(1).ref, False, False)
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_allowed_devices(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    allowed = xapi.VM.get_allowed_VBD_devices(vm)
    assert "0" not in allowed and allowed[0] == "1" and allowed[-1] == "254"
    dom0 = xapi.host.get_control_domain(pool.host(0).ref)
    assert xapi.VM.get_allowed_VBD_devices(dom0)[-1] == "255"


def test_vbd_create_plug_unplug_destroy(pool, xapi, disk):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    rec = xapi.VBD.get_record(vbd)
    assert rec["userdevice"] == "1" and not rec["currently_attached"] and rec["device"] == ""
    assert vbd in xapi.VDI.get_VBDs(disk) and vbd in xapi.VM.get_VBDs(vm)
    assert "1" not in xapi.VM.get_allowed_VBD_devices(vm)
    xapi.VBD.plug(vbd)
    assert xapi.VBD.get_currently_attached(vbd) and xapi.VBD.get_device(vbd) == "xvdb"
    fails("DEVICE_ALREADY_ATTACHED", xapi.VBD.plug, vbd)
    d = fails("OPERATION_NOT_ALLOWED", xapi.VBD.destroy, vbd)
    assert "still attached" in d[1]
    xapi.VBD.unplug(vbd)
    fails("DEVICE_ALREADY_DETACHED", xapi.VBD.unplug, vbd)
    xapi.VBD.destroy(vbd)
    fails("HANDLE_INVALID", xapi.VBD.get_record, vbd)


def test_vbd_create_errors(pool, xapi, disk):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(vm, disk, "0"))
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(vm, disk, "xvda"))
    fails("INVALID_DEVICE", xapi.VBD.create, vbd_rec(vm, disk, "floppy9"))
    fails("HANDLE_INVALID", xapi.VBD.create, vbd_rec(vm, "OpaqueRef:nope"))
    rec = vbd_rec(vm, disk)
    del rec["mode"]
    fails("INTERNAL_ERROR", xapi.VBD.create, rec)
    vbd = xapi.VBD.create(vbd_rec(vm, disk, "xvdq"))
    assert xapi.VBD.get_userdevice(vbd) == "xvdq"


def test_plug_needs_a_running_vm(pool, xapi, disk):
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    d = fails("VM_BAD_POWER_STATE", xapi.VBD.plug, vbd)
    assert d[1:] == [vm, "running", "halted"]
    fails("DEVICE_ALREADY_DETACHED", xapi.VBD.unplug, vbd)
    # a VM start plugs its VBDs
    xapi.VM.start(vm, False, False)
    assert xapi.VBD.get_currently_attached(vbd)


def test_vdi_in_use_and_not_unpluggable(pool, xapi, disk):
    vm1 = xapi.VM.get_by_name_label("vm-1")[0]
    vm3 = xapi.VM.get_by_name_label("vm-3")[0]
    a = xapi.VBD.create(vbd_rec(vm1, disk))
    xapi.VBD.plug(a)
    b = xapi.VBD.create(vbd_rec(vm3, disk))
    fails("VDI_IN_USE", xapi.VBD.plug, b)
    xapi.VBD.set_unpluggable(a, False)
    fails("VBD_NOT_UNPLUGGABLE", xapi.VBD.unplug, a)
    fails("VBD_NOT_UNPLUGGABLE", xapi.VBD.unplug_force, a)
    xapi.VBD.set_unpluggable(a, True)
    xapi.VBD.unplug_force(a)


def test_vdi_forget_in_use(pool, xapi, disk):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    xapi.VBD.plug(vbd)
    d = fails("VDI_IN_USE", xapi.VDI.forget, disk)
    assert d[1:] == [disk, "forget"]
    xapi.VBD.unplug(vbd)
    xapi.VDI.forget(disk)
    with pytest.raises(XenAPI.Failure):
        xapi.VDI.get_record(disk)


def test_pool_migrate_needs_a_running_vm_and_its_srs(pool, xapi):
    halted = xapi.VM.get_by_name_label("vm-2")[0]
    assert fails("VM_BAD_POWER_STATE", xapi.VM.pool_migrate, halted, pool.host(1).ref, {})[2:] \
        == ["running", "halted"]
    running = xapi.VM.get_by_name_label("vm-1")[0]  # its root disk is on host 0's local SR
    fails("VM_REQUIRES_SR", xapi.VM.pool_migrate, running, pool.host(1).ref, {})
    assert xapi.VM.get_resident_on(running) == pool.host(0).ref
