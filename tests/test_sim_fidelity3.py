"""Real-host truth, round 3 (issue 20): raw-LUN claims as xapi allows them, calls forwarded to
a host that is not live, and smaller differences, each through the wire."""

import json
import os
import textwrap
import time

import pytest
import XenAPI

from simstorage import claim, hba_luns, introduce, vdi_introduce_args
from test_sim_plugins import PLUGIN, install
from test_sim_wire import fails

# A plugin that asks xapi, over its host's unix socket as dom0's root (a local superuser),
# for what only an SM session may do.
LOCAL = textwrap.dedent("""\
    #!/usr/bin/python3
    import json
    import XenAPI
    import XenAPIPlugin

    def set_managed(session, args):
        own = XenAPI.xapi_local()
        own.xenapi.login_with_password("root", "", "", "fidelity")
        try:
            vdi = own.xenapi.VDI.get_by_uuid(args["vdi"])
            own.xenapi.VDI.set_managed(vdi, True)
            return "done"
        except XenAPI.Failure as f:
            return json.dumps(f.details)
        finally:
            own.xenapi.session.logout()

    if __name__ == "__main__":
        XenAPIPlugin.dispatch({"set_managed": set_managed})
    """)


# ------------------------------------------------------------------ §1 set_managed and claims
def test_sm_setters_are_refused_to_every_session_but_the_sms(pool, xapi):
    sr, _p, luns = hba_luns(pool, xapi, {1: ("3600a01", 4096)})
    vdi = luns["3600a01"]
    # message_forwarding.ml: Sm.assert_session_has_internal_sr_access after RBAC
    for fn, args in (
        (xapi.VDI.set_managed, (vdi, True)),
        (xapi.VDI.set_sharable, (vdi, True)),
        (xapi.VDI.set_read_only, (vdi, True)),
        (xapi.VDI.set_missing, (vdi, True)),
        (xapi.VDI.set_virtual_size, (vdi, "1")),
        (xapi.VDI.set_physical_utilisation, (vdi, "1")),
        (xapi.SR.set_physical_size, (sr, "1")),
        (xapi.SR.set_virtual_allocation, (sr, "1")),
        (xapi.SR.set_physical_utilisation, (sr, "1")),
    ):
        assert fails("PERMISSION_DENIED", fn, *args)[1:] == [""]
    # dom0's root over the unix socket (the plugin's own session) is no SM session either
    install(pool, "fid3", LOCAL)
    out = xapi.host.call_plugin(
        pool.host(0).ref, "fid3", "set_managed", {"vdi": xapi.VDI.get_uuid(vdi)}
    )
    assert json.loads(out) == ["PERMISSION_DENIED", ""]
    rec = xapi.VDI.get_record(vdi)
    assert rec["managed"] is False and rec["sharable"] is False and rec["virtual_size"] == "4096"


def test_vdi_create_on_hba_claims_the_smallest_unmanaged_lun_that_fits(pool, xapi):
    sr, _p, luns = hba_luns(
        pool, xapi, {1: ("3600a01", 4096), 2: ("3600a02", 8192), 3: ("3600a03", 8192)}
    )
    # LUNperVDI.RAWVDI.create: the smallest that fits, the first of equal ones (SR.VDIs order),
    # the LUN's existing record updated (update_vdi_db by location) with the higher-level fields
    got = xapi.VDI.create(claim(sr, 5000, {"mine": "1"}))
    assert got == luns["3600a02"]
    rec = xapi.VDI.get_record(got)
    assert rec["managed"] is True and rec["other_config"] == {"mine": "1"}
    assert rec["sm_config"]["SCSIid"] == "3600a02" and rec["virtual_size"] == "8192"
    assert xapi.VDI.create(claim(sr, 1)) == luns["3600a01"]
    assert xapi.VDI.create(claim(sr, 8192)) == luns["3600a03"]
    # SRNoSpace, as sm's XE_SR_ERRORCODES.xml words it
    d = fails("SR_BACKEND_FAILURE_44", xapi.VDI.create, claim(sr, 1))
    assert d[1:] == ["", "There is insufficient space", ""]
    assert len(xapi.SR.get_VDIs(sr)) == 3


def test_vdi_create_is_refused_where_xapi_refuses_it(pool, xapi):
    sr, p, _luns = hba_luns(pool, xapi, {1: ("3600a01", 4096)})
    rec = claim(sr, 1)
    rec["type"] = "cbt_metadata"
    fails("VDI_INCOMPATIBLE_TYPE", xapi.VDI.create, rec)
    xapi.PBD.unplug(p)
    fails("SR_HAS_NO_PBDS", xapi.VDI.create, claim(sr, 1))
    # an SM without VDI_CREATE (udev): xapi_sr_operations refuses the operation
    udev = introduce(xapi, "udev", "bbbbbbbb-0000-0000-0000-000000000001", shared=False)
    assert fails("SR_OPERATION_NOT_SUPPORTED", xapi.VDI.create, claim(udev, 1))[1:] == [udev]


def test_vdi_destroy_on_hba_releases_the_lun(pool, xapi):
    from test_sim_vm_vbd import vbd_rec

    sr, _p, luns = hba_luns(pool, xapi, {1: ("3600a01", 4096), 2: ("3600a02", 4096)})
    vdi = luns["3600a01"]
    assert fails("VDI_NOT_MANAGED", xapi.VDI.destroy, vdi)[1:] == [vdi]
    assert xapi.VDI.create(claim(sr, 4096)) == vdi
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    xapi.VBD.plug(vbd)
    assert fails("VDI_IN_USE", xapi.VDI.destroy, vdi)[1:] == [vdi, "destroy"]
    xapi.VBD.unplug(vbd)
    # LUNperVDI.RAWVDI.delete unmanages; xapi then destroys the record and its VBDs
    xapi.VDI.destroy(vdi)
    for cls, ref in (("VDI", vdi), ("VBD", vbd)):
        with pytest.raises(XenAPI.Failure):
            getattr(xapi, cls).get_record(ref)
    xapi.SR.scan(sr)
    again = [v for v in xapi.SR.get_VDIs(sr) if xapi.VDI.get_sm_config(v)["SCSIid"] == "3600a01"]
    assert len(again) == 1 and xapi.VDI.get_managed(again[0]) is False


def test_vdi_introduce_on_hba_fails_as_xapi_prints_it(pool, xapi):
    sr, _p, luns = hba_luns(pool, xapi, {1: ("3600a01", 4096)})
    loc = xapi.VDI.get_location(luns["3600a01"])
    d = fails(
        "INTERNAL_ERROR",
        xapi.VDI.introduce,
        *vdi_introduce_args(xapi.VDI.get_uuid(luns["3600a01"]), sr, loc, {"LUNid": "1"}),
    )
    assert d[1:] == ["Storage_error ([S(Vdi_does_not_exist);S(%s)])" % loc]


# ------------------------------------------------------------------ §2 hosts that are not live
def test_calls_forwarded_to_a_host_that_is_not_live_fail_host_offline(pool, xapi):
    install(pool, "probe", PLUGIN)
    member = pool.host(1)
    vm = [
        v
        for v in xapi.VM.get_all()
        if xapi.VM.get_resident_on(v) == member.ref and not xapi.VM.get_is_control_domain(v)
    ][0]
    pool.admin.host_live(member.uuid, False)
    # message_forwarding.ml do_op_on -> check_live, before anything runs
    d = fails("HOST_OFFLINE", xapi.host.call_plugin, member.ref, "probe", "echo", {})
    assert d[1:] == [member.ref]
    assert fails("HOST_OFFLINE", xapi.VM.call_host_plugin, vm, "probe", "echo", {})[1:] == [
        member.ref
    ]
    assert xapi.VM.get_current_operations(vm) == {}
    # the master, where the call comes in, counts as live whatever its record says
    pool.admin.host_live(pool.host(0).uuid, False)
    assert xapi.host.call_plugin(pool.host(0).ref, "probe", "echo", {}) == "{}"
    pool.admin.host_live(member.uuid, True)
    assert xapi.host.call_plugin(member.ref, "probe", "echo", {}) == "{}"


def test_pbd_vbd_and_sr_operations_forwarded_to_an_offline_host_fail(pool, xapi):
    member = pool.host(1)
    local = pool.sim.local_sr(member.ref)
    [pbd] = xapi.SR.get_PBDs(local)
    vm = [
        v
        for v in xapi.VM.get_all()
        if xapi.VM.get_resident_on(v) == member.ref and not xapi.VM.get_is_control_domain(v)
    ][0]
    [root] = xapi.VM.get_VBDs(vm)
    xapi.VBD.unplug(root)
    pool.admin.host_live(member.uuid, False)
    # forward_pbd_op, forward_vm_op, forward_sr_op: do_op_on -> check_live
    for fn, arg in ((xapi.PBD.unplug, pbd), (xapi.VBD.plug, root), (xapi.SR.scan, local)):
        assert fails("HOST_OFFLINE", fn, arg)[1:] == [member.ref]
    assert xapi.PBD.get_currently_attached(pbd) and not xapi.VBD.get_currently_attached(root)
    pool.admin.host_live(member.uuid, True)
    xapi.VBD.plug(root)
    xapi.SR.scan(local)


def test_a_forwarded_calls_task_is_resident_on_the_host_it_runs_on(pool, xapi):
    install(pool, "probe", PLUGIN)
    for i in (0, 1):
        task = xapi.Async.host.call_plugin(pool.host(i).ref, "probe", "echo", {})
        for _ in range(600):
            if xapi.task.get_status(task) != "pending":
                break
            time.sleep(0.05)
        rec = xapi.task.get_record(task)
        assert rec["status"] == "success" and rec["resident_on"] == pool.host(i).ref
        # set_forwarding_on_task's forwarded and forwarded_to are internal_only fields
        assert "forwarded" not in rec and "forwarded_to" not in rec
        xapi.task.destroy(task)


# ------------------------------------------------------------------ §3 smaller differences
def test_pool_migrate_during_a_call_host_plugin_waits_for_it(pool, xapi):
    install(pool, "probe", PLUGIN)
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    source = pool.sim.host(xapi.VM.get_resident_on(vm))
    for vbd in xapi.VM.get_VBDs(vm):  # its local root disk could not follow it
        xapi.VBD.unplug(vbd)
        xapi.VBD.destroy(vbd)
    call = xapi.Async.VM.call_host_plugin(vm, "probe", "hold", {})
    while not xapi.VM.get_current_operations(vm):
        assert xapi.task.get_status(call) == "pending"
    dest = pool.host(1).ref
    migrate = xapi.Async.VM.pool_migrate(vm, dest, {"live": "true"})
    # with_vm_operation, Policy.standard: neither refused nor run alongside the call
    for _ in range(3):
        assert xapi.task.get_status(migrate) == "pending"
    assert xapi.VM.get_resident_on(vm) == source.ref
    os.makedirs(source.path("var/tmp"), exist_ok=True)
    open(source.path("var/tmp/release"), "w").close()
    for task in (call, migrate):
        for _ in range(600):
            if xapi.task.get_status(task) != "pending":
                break
            time.sleep(0.05)
        assert xapi.task.get_status(task) == "success", xapi.task.get_error_info(task)
    assert xapi.VM.get_resident_on(vm) == dest


def test_pool_migrate_waiting_on_a_call_can_be_cancelled(pool, xapi):
    install(pool, "probe", PLUGIN)
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    source = pool.sim.host(xapi.VM.get_resident_on(vm))
    call = xapi.Async.VM.call_host_plugin(vm, "probe", "hold", {})
    while not xapi.VM.get_current_operations(vm):
        pass
    assert xapi.task.get_status(call) == "pending"
    migrate = xapi.Async.VM.pool_migrate(vm, pool.host(1).ref, {})
    while "cancel" not in xapi.task.get_allowed_operations(migrate):
        pass
    xapi.task.cancel(migrate)
    for _ in range(600):
        if xapi.task.get_status(migrate) != "pending":
            break
        time.sleep(0.05)
    assert xapi.task.get_status(migrate) == "cancelled"
    assert xapi.VM.get_resident_on(vm) == source.ref
    os.makedirs(source.path("var/tmp"), exist_ok=True)
    open(source.path("var/tmp/release"), "w").close()


def test_call_host_plugin_on_a_halted_vm_capitalises_the_power_states(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    d = fails("VM_BAD_POWER_STATE", xapi.VM.call_host_plugin, vm, "probe", "echo", {})
    assert d[1:] == [vm, "Running", "Halted"]


def test_guest_metrics_appear_when_the_agent_reports(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]  # halted, with an agent
    pool.admin.set_guest_agent_delay(0.5)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    for _ in range(600):
        if xapi.VM.get_guest_metrics(vm) != "OpaqueRef:NULL":
            break
        time.sleep(0.05)
    gm = xapi.VM.get_guest_metrics(vm)
    assert xapi.VM_guest_metrics.get_PV_drivers_detected(gm) is True
    # a domain stopped before its agent reports leaves no metrics behind
    xapi.VM.hard_shutdown(vm)
    xapi.VM.start(vm, False, False)
    xapi.VM.hard_shutdown(vm)
    time.sleep(1.0)
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"


def test_secret_uuids_are_unique_across_every_class(pool, xapi):
    vm_uuid = xapi.VM.get_uuid(xapi.VM.get_by_name_label("vm-1")[0])
    d = fails("INTERNAL_ERROR", xapi.secret.introduce, vm_uuid, "v", {})
    assert d[1:] == ['Db_exn.Uniqueness_constraint_violation("secret", "uuid", "%s")' % vm_uuid]


def test_serve_takes_the_guest_agent_delay(tmp_path):
    from xapisim import cli

    sim, servers, _info = cli.start(1, 2, state_dir=str(tmp_path), guest_agent_delay=90)
    try:
        assert sim.guest_agent_delay == 90.0
    finally:
        servers.stop()
