"""Async.* calls and the task class, the filter language of get_all_records_where, and
map-key errors, as xapi does them."""

import json
import threading
import time

import pytest

from test_sim_plugins import PLUGIN, install
from test_sim_vm_vbd import disk, vbd_rec  # noqa: F401 (fixture)
from test_sim_wire import fails, http, json_body, raw


def wait_done(xapi, task, bound=60.0):
    """Poll a task as a client does, until it leaves `pending` (the bound only stops a hang)."""
    end = time.time() + bound
    while xapi.task.get_status(task) == "pending":
        assert time.time() < end, "task still pending"
        time.sleep(0.02)
    return xapi.task.get_record(task)


def wait_for(predicate, bound=60.0):
    end = time.time() + bound
    while not predicate():
        assert time.time() < end, "condition never held"
        time.sleep(0.02)


@pytest.fixture
def plugin(pool):
    install(pool, "probe", PLUGIN)
    return "probe"


def halted_vm(xapi):
    return xapi.VM.get_by_name_label("vm-2")[0]


def running_vm(xapi):
    return xapi.VM.get_by_name_label("vm-1")[0]


# --------------------------------------------------------------------------- Async.*
def test_async_call_plugin_completes_a_task(pool, xapi, plugin):
    host = pool.host(0).ref
    task = xapi.Async.host.call_plugin(host, plugin, "echo", {"a": '<&>"b"'})
    assert task.startswith("OpaqueRef:")
    rec = wait_done(xapi, task)
    assert rec["status"] == "success"
    # taskHelper.ml set_result_on_task: Xmlrpc.to_string of the result, entities escaped
    assert (
        rec["result"]
        == "<value>{&quot;a&quot;: &quot;&lt;&amp;&gt;\\&quot;b\\&quot;&quot;}</value>"
    )
    assert rec["name_label"] == "Async.host.call_plugin"
    assert rec["progress"] == 1.0 and rec["error_info"] == []
    assert rec["resident_on"] == host and rec["type"] == "<none/>"
    assert rec["allowed_operations"] == [] and rec["subtask_of"] == "OpaqueRef:NULL"
    assert str(rec["created"]) <= str(rec["finished"]) and str(rec["created"]) > "2000"
    assert "session" not in rec
    assert xapi.task.get_result(task) == rec["result"]
    assert task in xapi.task.get_all() and task in xapi.task.get_all_records()


def test_async_failure_lands_in_error_info(pool, xapi, disk):  # noqa: F811
    vm = halted_vm(xapi)
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    rec = wait_done(xapi, xapi.Async.VBD.plug(vbd))
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert rec["result"] == "" and rec["progress"] == 1.0
    # the handle is checked by the call itself, inside the task
    rec = wait_done(xapi, xapi.Async.VBD.plug("OpaqueRef:nope"))
    assert rec["error_info"] == ["HANDLE_INVALID", "VBD", "OpaqueRef:nope"]


def test_async_void_ref_and_record_results(pool, xapi, disk):  # noqa: F811
    vm = running_vm(xapi)
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    plug = wait_done(xapi, xapi.Async.VBD.plug(vbd))
    assert (plug["status"], plug["result"]) == ("success", "<value></value>")
    assert xapi.VBD.get_currently_attached(vbd)
    unplug = wait_done(xapi, xapi.Async.VBD.unplug(vbd))
    assert unplug["status"] == "success" and not xapi.VBD.get_currently_attached(vbd)
    made = wait_done(xapi, xapi.Async.VBD.create(vbd_rec(vm, disk)))
    assert made["result"].startswith("<value>OpaqueRef:")
    sr = xapi.VDI.get_SR(disk)
    assert wait_done(xapi, xapi.Async.SR.scan(sr))["status"] == "success"


def test_async_pool_migrate(pool, xapi):
    vm = running_vm(xapi)
    rec = wait_done(xapi, xapi.Async.VM.pool_migrate(vm, pool.host(1).ref, {}))
    # the seeded VM's disk is on local storage: the same refusal as the sync call
    assert rec["status"] == "failure" and rec["error_info"][0] == "VM_REQUIRES_SR"


def test_messages_without_async_mode(pool, xapi):
    # server_helpers.ml do_dispatch: API.response_of_fault
    d = fails("Fault", xapi.Async.VM.get_all)
    assert d == ["Fault", "No async mode for this operation (rpc: VM.get_all)"]
    fails("Fault", xapi.Async.VM.get_name_label, running_vm(xapi))
    fails("Fault", xapi.Async.task.create, "x", "y")
    assert fails("MESSAGE_METHOD_UNKNOWN", xapi.Async.VM.nope) == [
        "MESSAGE_METHOD_UNKNOWN",
        "VM.nope",
    ]
    # unmarshalling and the session check still answer at once
    fails("MESSAGE_PARAMETER_COUNT_MISMATCH", xapi.Async.VBD.plug)


def test_sync_call_has_a_task_only_while_it_runs(pool, xapi, disk):  # noqa: F811
    vbd = xapi.VBD.create(vbd_rec(running_vm(xapi), disk))
    assert xapi.task.get_all() == []
    pool.admin.set_latency("VBD.plug", 1.0)
    t = threading.Thread(target=pool.session().xenapi.VBD.plug, args=(vbd,))
    t.start()
    wait_for(
        lambda: [r["name_label"] for r in xapi.task.get_all_records().values()] == ["VBD.plug"]
    )
    t.join()
    assert xapi.task.get_all() == []
    assert xapi.VBD.get_currently_attached(vbd)


# --------------------------------------------------------------------------- cancel, destroy
def test_cancel_a_xenops_call_before_it_starts(pool, xapi, disk):  # noqa: F811
    vbd = xapi.VBD.create(vbd_rec(running_vm(xapi), disk))
    pool.admin.set_latency("VBD.plug", 600.0, "client")
    task = xapi.Async.VBD.plug(vbd)
    wait_for(lambda: xapi.task.get_allowed_operations(task) == ["cancel"])
    xapi.task.cancel(task)
    rec = wait_done(xapi, task)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", task]
    assert list(rec["current_operations"].values()) == ["cancel"]
    assert not xapi.VBD.get_currently_attached(vbd)


def test_cancel_does_not_stop_a_plugin_call(pool, xapi, plugin):
    # xapi_plugins.ml runs the plugin bound to no task: task.cancel changes nothing
    pool.admin.set_latency("host.call_plugin", 1.0)
    task = xapi.Async.host.call_plugin(pool.host(0).ref, plugin, "echo", {})
    assert xapi.task.get_allowed_operations(task) == []
    xapi.task.cancel(task)
    assert list(xapi.task.get_current_operations(task).values()) == ["cancel"]
    rec = wait_done(xapi, task)
    assert rec["status"] == "success" and rec["result"] == "<value>{}</value>"


def test_destroy(pool, xapi, plugin):
    task = xapi.Async.host.call_plugin(pool.host(0).ref, plugin, "echo", {})
    wait_done(xapi, task)
    xapi.task.destroy(task)
    fails("HANDLE_INVALID", xapi.task.get_status, task)
    # a pending task is marked and goes when it completes
    pool.admin.set_latency("host.call_plugin", 1.0)
    task = xapi.Async.host.call_plugin(pool.host(0).ref, plugin, "echo", {})
    xapi.task.destroy(task)
    assert xapi.task.get_current_operations(task) == {"task": "destroy"}
    wait_for(lambda: task not in xapi.task.get_all())


def test_tasks_outlive_their_session(pool, xapi, plugin):
    other = pool.session()
    task = other.xenapi.Async.host.call_plugin(pool.host(0).ref, plugin, "echo", {})
    assert other.xenapi.session.get_record(other._session)["tasks"] == [task]
    other.xenapi.session.logout()
    assert wait_done(xapi, task)["status"] == "success"


def test_task_create(pool, xapi):
    task = xapi.task.create("mine", "a task of my own")
    rec = xapi.task.get_record(task)
    assert (rec["name_label"], rec["name_description"], rec["status"]) == (
        "mine",
        "a task of my own",
        "pending",
    )
    xapi.task.destroy(task)
    assert xapi.task.get_current_operations(task) == {"task": "destroy"}


# --------------------------------------------------------------------------- latency by caller
def test_latency_limited_to_plugin_calls(pool, xapi, disk):  # noqa: F811
    vbd = xapi.VBD.create(vbd_rec(running_vm(xapi), disk))
    pool.admin.set_latency("VBD.plug", 600.0, "plugin")
    assert wait_done(xapi, xapi.Async.VBD.plug(vbd))["status"] == "success"
    pool.admin.clear()
    xapi.VBD.unplug(vbd)
    pool.admin.set_latency("*", 600.0, "client")
    pool.admin.set_latency("task.cancel", 0.0, "client")
    pool.admin.set_latency("task.get_allowed_operations", 0.0, "client")
    task = xapi.Async.VBD.plug(vbd)
    wait_for(lambda: xapi.task.get_allowed_operations(task) == ["cancel"])
    xapi.task.cancel(task)
    pool.admin.clear()
    assert wait_done(xapi, task)["status"] == "cancelled"
    r = raw(pool, "xapisim.set_latency", "VBD.plug", 1.0, "nobody")
    assert r["ErrorDescription"] == ["INVALID_VALUE", "caller", "nobody"]


def test_faults_apply_to_the_async_form(pool, xapi, disk):  # noqa: F811
    vbd = xapi.VBD.create(vbd_rec(running_vm(xapi), disk))
    pool.admin.inject_fault("VBD.plug", ["INTERNAL_ERROR", "injected"], {"caller": "client"})
    rec = wait_done(xapi, xapi.Async.VBD.plug(vbd))
    assert rec["error_info"] == ["INTERNAL_ERROR", "injected"]
    assert pool.admin.counts()["Async.VBD.plug"] == {"client": 1}
    pool.admin.inject_fault("Async.VBD.plug", ["INTERNAL_ERROR", "async only"], {})
    xapi.VBD.plug(vbd)
    xapi.VBD.unplug(vbd)
    assert wait_done(xapi, xapi.Async.VBD.plug(vbd))["error_info"][1] == "async only"


# --------------------------------------------------------------------------- records
def test_get_all_records_where(pool, xapi):
    vms = xapi.VM.get_all_records_where('field "name_label" = "vm-1"')
    assert [v["name_label"] for v in vms.values()] == ["vm-1"]
    both = xapi.VM.get_all_records_where(
        'field "name_label" = "vm-1" or field "name_label" = "vm-2"'
    )
    assert sorted(v["name_label"] for v in both.values()) == ["vm-1", "vm-2"]
    # %right LNOT below %left LAND LOR: `not` reaches to the end of the expression
    rest = xapi.VM.get_all_records_where(
        'not field "is_control_domain" = "true" and field "power_state" = "Running"'
    )
    # = not (dom0 and running): every guest, no control domain (they all run)
    assert sorted(v["name_label"] for v in rest.values()) == ["vm-1", "vm-2", "vm-3", "vm-4"]
    guests = xapi.VM.get_all_records_where(
        '(not field "is_control_domain" = "true") and field "power_state" = "Running"'
    )
    assert sorted(v["name_label"] for v in guests.values()) == ["vm-1", "vm-3"]
    vm1 = list(vms)[0]
    assert vms[vm1] == xapi.VM.get_record(vm1)
    assert set(xapi.VM.get_all_where("true")) == set(xapi.VM.get_all())
    assert xapi.VBD.get_all_records_where('field "VM" = "%s"' % vm1) == dict(
        (r, xapi.VBD.get_record(r)) for r in xapi.VM.get_VBDs(vm1)
    )
    assert xapi.SR.get_all_records_where('"a" = "b"') == {}


def test_get_all_records_where_errors(pool, xapi):
    d = fails("INVALID_VALUE", xapi.VM.get_all_records_where, "name_label = 'x'")
    assert d == ["INVALID_VALUE", "name_label = 'x'", 'Failure("lexing: empty token")']
    d = fails("INVALID_VALUE", xapi.VM.get_all_records_where, 'field "x" =')
    assert d[2] == "Xapi_database__Db_filter_parse.MenhirBasics.Error"
    assert fails("INTERNAL_ERROR", xapi.VM.get_all_records_where, 'field "nope" = "x"') == [
        "INTERNAL_ERROR",
        "Not_found",
    ]
    assert xapi.VM.get_all_records_where('false and field "nope" = "x"') == {}
    fails("MESSAGE_METHOD_UNKNOWN", xapi.session.get_all_records)


def test_get_all_records_with_many_objects(pool, xapi):
    db = pool.sim.db
    vm = running_vm(xapi)
    with db.lock:
        vdi = db.find("VBD", VM=vm)[0]
        made = set(
            db.create("VBD", {"VM": vm, "VDI": db.raw("VBD", vdi)["VDI"], "userdevice": str(i)})
            for i in range(1000)
        )
    recs = xapi.VBD.get_all_records()
    assert made <= set(recs)
    assert set(xapi.VM.get_record(vm)["VBDs"]) >= made
    assert len(xapi.VM.get_all_records()[vm]["VBDs"]) == 1001


# --------------------------------------------------------------------------- map keys
def test_map_duplicate_key_names_the_ref(pool, xapi):
    vm = running_vm(xapi)
    xapi.VM.add_to_other_config(vm, "k", "v")
    # db_cache_impl.ml raises Duplicate_key (tblname, fld, objref, key), even for the same value
    assert fails("MAP_DUPLICATE_KEY", xapi.VM.add_to_other_config, vm, "k", "v") == [
        "MAP_DUPLICATE_KEY",
        "VM",
        "other_config",
        vm,
        "k",
    ]


def test_empty_map_key_is_an_internal_error(pool, xapi, disk):  # noqa: F811
    vm = running_vm(xapi)
    expected = ["INTERNAL_ERROR", "Db_exn.Empty_key_in_map"]
    assert fails("INTERNAL_ERROR", xapi.VM.add_to_other_config, vm, "", "v") == expected
    # An empty key inside a struct cannot even be parsed from XML-RPC (ocaml-rpc refuses
    # <name></name>: HTTP 500); JSON-RPC carries it to the database, which refuses it.
    session = pool.session()._session
    for method, params in (
        ("VM.set_other_config", [session, vm, {"": "v"}]),
        ("VBD.create", [session, vbd_rec(vm, disk, other_config={"": "x"})]),
    ):
        before = xapi.VBD.get_all()
        _head, body = http(pool, json_body(method, params), path="/jsonrpc")
        assert json.loads(body)["error"] == expected
        assert xapi.VBD.get_all() == before
    assert "" not in xapi.VM.get_other_config(vm)
