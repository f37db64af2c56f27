"""VM power operations and the VBD lifecycle in the simulator."""

import pytest
import XenAPI

from conftest import Pool
from test_sim_wire import fails


def vbd_rec(vm, vdi, userdevice="autodetect", mode="RW", **kw):
    rec = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": False,
        "mode": mode,
        "type": "Disk",
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    rec.update(kw)
    return rec


@pytest.fixture
def disk(pool, xapi):
    """A spare VDI on the master's local SR."""
    sr = [
        r
        for r, v in xapi.SR.get_all_records().items()
        if v["type"] == "ext" and xapi.PBD.get_host(v["PBDs"][0]) == pool.host(0).ref
    ][0]
    uuid = "11111111-2222-3333-4444-555555555555"
    pool.admin.put_vdi(xapi.SR.get_uuid(sr), uuid, {"virtual_size": str(1 << 30)})
    xapi.SR.scan(sr)
    return xapi.VDI.get_by_uuid(uuid)


def test_seeded_pool(pool, xapi):
    vms = dict(
        (v["name_label"], (r, v))
        for r, v in xapi.VM.get_all_records().items()
        if not v["is_control_domain"]
    )
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
    # xapi_vbd_helpers.ml: a non-running VM always gives VM_BAD_POWER_STATE for unplug
    assert fails("VM_BAD_POWER_STATE", xapi.VBD.unplug, vbd)[2:] == ["running", "halted"]
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
    assert fails("VM_BAD_POWER_STATE", xapi.VM.pool_migrate, halted, pool.host(1).ref, {})[2:] == [
        "running",
        "halted",
    ]
    running = xapi.VM.get_by_name_label("vm-1")[0]  # its root disk is on host 0's local SR
    fails("VM_REQUIRES_SR", xapi.VM.pool_migrate, running, pool.host(1).ref, {})
    assert xapi.VM.get_resident_on(running) == pool.host(0).ref


# --------------------------------------------------------------------- guests, VM.start, devices
@pytest.fixture
def guests():
    """Six seeded VMs: vm-1..vm-4 PV, vm-5 running HVM with PV drivers, vm-6 running HVM
    without."""
    p = Pool(vms=6)
    yield p
    p.close()


def _vm(xapi, name):
    return xapi.VM.get_by_name_label(name)[0]


def _spare(pool, xapi, host_index, uuid):
    sr = pool.sim.local_sr(pool.host(host_index).ref)
    pool.admin.put_vdi(xapi.SR.get_uuid(sr), uuid, {"virtual_size": str(1 << 30)})
    xapi.SR.scan(sr)
    return xapi.VDI.get_by_uuid(uuid)


def test_seeded_guest_kinds(guests):
    xapi = guests.session().xenapi
    for name, kind, drivers in (
        ("vm-1", "pv", True),
        ("vm-5", "hvm", True),
        ("vm-6", "hvm", False),
    ):
        rec = xapi.VM.get_record(_vm(xapi, name))
        assert rec["domain_type"] == kind and rec["power_state"] == "Running"
        assert xapi.VM_metrics.get_current_domain_type(rec["metrics"]) == kind
        if drivers:
            assert xapi.VM_guest_metrics.get_PV_drivers_detected(rec["guest_metrics"])
        else:
            assert rec["guest_metrics"] == "OpaqueRef:NULL"
    for host in xapi.host.get_all():
        assert xapi.host_metrics.get_live(xapi.host.get_metrics(host))


def test_hvm_hotplug_rules(guests):
    xapi = guests.session().xenapi
    disk = _spare(guests, xapi, 2, "22222222-2222-3333-4444-555555555555")
    with_drivers, without = _vm(xapi, "vm-5"), _vm(xapi, "vm-6")
    ro = xapi.VBD.create(vbd_rec(with_drivers, disk, mode="ro"))  # enums in any case
    assert xapi.VBD.get_mode(ro) == "RO"
    fails("DISK_VBD_MUST_BE_READWRITE_FOR_HVM", xapi.VBD.plug, ro)
    xapi.VBD.destroy(ro)
    vbd = xapi.VBD.create(vbd_rec(without, disk))
    assert fails("VM_MISSING_PV_DRIVERS", xapi.VBD.plug, vbd)[1:] == [without]
    # the PV-driver refusal comes before DISK_VBD_MUST_BE_READWRITE_FOR_HVM
    xapi.VBD.destroy(vbd)
    vbd = xapi.VBD.create(vbd_rec(without, disk, mode="RO"))
    fails("VM_MISSING_PV_DRIVERS", xapi.VBD.plug, vbd)
    xapi.VBD.destroy(vbd)
    vbd = xapi.VBD.create(vbd_rec(with_drivers, disk))
    xapi.VBD.plug(vbd)
    assert xapi.VBD.get_device(vbd) == "xvdb"
    # a guest that says it cannot hot-plug is believed
    gm = xapi.VM.get_guest_metrics(with_drivers)
    with guests.sim.db.lock:
        guests.sim.db.raw("VM_guest_metrics", gm)["can_use_hotplug_vbd"] = "no"
    d = fails("OPERATION_NOT_ALLOWED", xapi.VBD.unplug, vbd)
    assert d[1] == "VM states it does not support VBD hotplug."
    # the unplug refusal applies to a driverless HVM guest's own disks too
    root = xapi.VM.get_VBDs(without)[0]
    fails("VM_MISSING_PV_DRIVERS", xapi.VBD.unplug, root)
    # halted: an HVM guest boots with an RO disk (qemu leaves it out; no xapi check)
    xapi.VM.hard_shutdown(without)
    assert xapi.VM.get_guest_metrics(without) == "OpaqueRef:NULL"
    assert xapi.VM_metrics.get_current_domain_type(xapi.VM.get_metrics(without)) == "unspecified"


def test_set_domain_type(pool, xapi):
    vm = _vm(xapi, "vm-2")
    xapi.VM.set_domain_type(vm, "HVM")
    assert xapi.VM.get_domain_type(vm) == "hvm" and xapi.VM.get_HVM_boot_policy(vm) == "BIOS order"
    assert fails("INVALID_VALUE", xapi.VM.set_domain_type, vm, "unspecified")[1:] == [
        "domain_type",
        "unspecified",
    ]
    fails("INTERNAL_ERROR", xapi.VM.set_domain_type, vm, "xen")
    xapi.VM.start(vm, False, False)
    assert xapi.VM_metrics.get_current_domain_type(xapi.VM.get_metrics(vm)) == "hvm"
    assert xapi.VBD.get_device(xapi.VM.get_VBDs(vm)[0]) == "xvda"
    xapi.VM.set_domain_type(vm, "pv")  # takes effect at the next start
    assert xapi.VM_metrics.get_current_domain_type(xapi.VM.get_metrics(vm)) == "hvm"


def test_start_runs_the_attach_checks(pool, xapi, disk):
    running, halted = _vm(xapi, "vm-1"), _vm(xapi, "vm-2")
    a = xapi.VBD.create(vbd_rec(running, disk))
    xapi.VBD.plug(a)
    b = xapi.VBD.create(vbd_rec(halted, disk))
    assert fails("VDI_IN_USE", xapi.VM.start, halted, False, False)[1:] == [disk]
    fails("VDI_IN_USE", xapi.VM.start_on, halted, pool.host(0).ref, False, False)
    assert xapi.VM.get_power_state(halted) == "Halted"
    xapi.VBD.unplug(a)
    with pool.sim.db.lock:  # what the SM writes for a raw LUN (sm LUNperVDI.py)
        pool.sim.db.raw("VDI", disk)["managed"] = False
    assert fails("VDI_NOT_MANAGED", xapi.VM.start, halted, False, False)[1:] == [b]
    assert fails("VDI_NOT_MANAGED", xapi.VBD.plug, a)[1:] == [a]
    with pool.sim.db.lock:
        pool.sim.db.raw("VDI", disk)["managed"] = True
        pool.sim.db.raw("VDI", disk)["read_only"] = True
    fails("VDI_READONLY", xapi.VM.start, halted, False, False)
    fails("VDI_READONLY", xapi.VBD.plug, a)
    with pool.sim.db.lock:
        pool.sim.db.raw("VDI", disk)["read_only"] = False
    xapi.VM.start(halted, False, False)
    assert xapi.VBD.get_currently_attached(b)


def test_start_picks_a_host_that_sees_the_srs(pool, xapi):
    vm = _vm(xapi, "vm-2")  # root disk on host 0's local SR
    xapi.VM.set_affinity(vm, pool.host(1).ref)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_resident_on(vm) == pool.host(0).ref
    xapi.VM.hard_shutdown(vm)
    xapi.VM.set_affinity(vm, "OpaqueRef:NULL")
    with pool.sim.db.lock:
        metrics = pool.sim.db.raw("host", pool.host(0).ref)["metrics"]
        pool.sim.db.raw("host_metrics", metrics)["live"] = False
    assert not xapi.host_metrics.get_live(metrics)
    assert fails("NO_HOSTS_AVAILABLE", xapi.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    fails("HOST_NOT_LIVE", xapi.VM.start_on, vm, pool.host(0).ref, False, False)
    with pool.sim.db.lock:
        pool.sim.db.raw("host_metrics", metrics)["live"] = True
        pool.sim.db.raw("host", pool.host(0).ref)["enabled"] = False
    assert fails("HOST_DISABLED", xapi.VM.start_on, vm, pool.host(0).ref, False, False)[1:] == [
        pool.host(0).ref
    ]


def test_plug_with_the_sr_not_attached_on_the_host(pool, xapi, disk):
    vm = _vm(xapi, "vm-3")  # running on host 1; the disk is on host 0's local SR
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    d = fails("INTERNAL_ERROR", xapi.VBD.plug, vbd)
    assert "No_storage_plugin_for_sr" in d[1] and xapi.SR.get_uuid(xapi.VDI.get_SR(disk)) in d[1]
    assert not xapi.VBD.get_currently_attached(vbd)


def test_device_clashes_follow_the_bus_rules(pool, xapi, disk):
    pv = _vm(xapi, "vm-1")  # root disk at userdevice 0, device xvda
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(pv, disk, "hda"))  # Ide 0, HVM "0"
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(pv, disk, "d0"))
    scsi = xapi.VBD.create(vbd_rec(pv, disk, "sdb"))  # Scsi 1 is another bus than Xen/Ide 1
    one = xapi.VBD.create(vbd_rec(pv, disk, "1"))
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(pv, disk, "xvdb"))
    assert xapi.VBD.get_userdevice(one) == "1" and xapi.VBD.get_userdevice(scsi) == "sdb"
    big = xapi.VBD.create(vbd_rec(pv, disk, "300"))  # Xen disks go up to 2^20-1
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(pv, disk, "xvdko"))  # disk 300
    for bad in ("floppy9", "xvd", "XVDB", "e1"):
        fails("INVALID_DEVICE", xapi.VBD.create, vbd_rec(pv, disk, bad))
    assert xapi.VBD.get_userdevice(xapi.VBD.create(vbd_rec(pv, disk))) == "2"
    for v in (scsi, one, big):
        xapi.VBD.destroy(v)
    # the device field counts as well as userdevice
    root = xapi.VM.get_VBDs(pv)[0]
    with pool.sim.db.lock:  # no API call inside: the server takes this lock too
        pool.sim.db.raw("VBD", root)["device"] = "xvdf"
    assert "5" not in xapi.VM.get_allowed_VBD_devices(pv)
    fails("DEVICE_ALREADY_EXISTS", xapi.VBD.create, vbd_rec(pv, disk, "5"))
    fails("VBD_CDS_MUST_BE_READONLY", xapi.VBD.create, vbd_rec(pv, disk, type="CD"))
    fails("NOT_IMPLEMENTED", xapi.VBD.create, vbd_rec(pv, disk, type="floppy", mode="RO"))
    fails("INTERNAL_ERROR", xapi.VBD.create, vbd_rec(pv, disk, mode="rx"))


def test_vm_destroy(pool, xapi, disk):
    vm = _vm(xapi, "vm-1")
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    assert fails("VM_BAD_POWER_STATE", xapi.VM.destroy, vm)[2:] == ["halted, suspended", "running"]
    xapi.VM.hard_shutdown(vm)
    metrics = xapi.VM.get_metrics(vm)
    root_vdi = xapi.VBD.get_VDI(xapi.VM.get_VBDs(vm)[0])
    xapi.VM.destroy(vm)
    fails("HANDLE_INVALID", xapi.VM.get_record, vm)
    fails("HANDLE_INVALID", xapi.VBD.get_record, vbd)
    fails("HANDLE_INVALID", xapi.VM_metrics.get_record, metrics)
    assert xapi.VDI.get_VBDs(disk) == [] and xapi.VDI.get_VBDs(root_vdi) == []
    dom0 = xapi.host.get_control_domain(pool.host(0).ref)
    fails("VM_BAD_POWER_STATE", xapi.VM.destroy, dom0)


def vm_rec(name, **kw):
    """The fields VM.create requires (xen-api datamodel_vm.ml), for a small PV guest."""
    rec = {
        "name_label": name,
        "user_version": "1",
        "is_a_template": False,
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(1 << 30),
        "memory_dynamic_max": str(1 << 30),
        "memory_dynamic_min": str(1 << 30),
        "memory_static_min": str(1 << 28),
        "VCPUs_params": {},
        "VCPUs_max": "1",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": {},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }
    rec.update(kw)
    return rec


def test_vm_create(pool, xapi, disk):
    """xen-api xapi_vm.ml create: a Halted VM whatever power state is asked, Suspended
    refused without its suspend image; PV from an empty HVM_boot_policy; it takes disks and
    starts like any other."""
    rec = vm_rec("new-vm")
    del rec["PV_args"]
    fails("INTERNAL_ERROR", xapi.VM.create, rec)
    fails("VM_BAD_POWER_STATE", xapi.VM.create, vm_rec("new-vm", power_state="Suspended"))
    vm = xapi.VM.create(vm_rec("new-vm", power_state="Running"))
    got = xapi.VM.get_record(vm)
    assert got["power_state"] == "Halted" and got["domain_type"] == "pv"
    assert got["resident_on"] == "OpaqueRef:NULL" and "mac_seed" in got["other_config"]
    assert xapi.VM_metrics.get_current_domain_type(got["metrics"]) == "unspecified"
    xapi.VBD.create(vbd_rec(vm, disk))
    xapi.VM.start_on(vm, pool.host(0).ref, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.hard_shutdown(vm)
    xapi.VM.destroy(vm)
