"""The event class and system.listMethods over the wire, as xen-api ocaml/xapi/xapi_event.ml
and gen_server.ml have them: event.from's tokens, snapshots and timeout, event.inject,
event.register / unregister / next and their errors, events of every class, tasks included."""

import hashlib
import json
import re
import threading
import time
import xmlrpc.client

import pytest

from test_sim_plugins import PLUGIN, install
from test_sim_tasks import wait_done
from test_sim_wire import fails, http, json_body, xml_call

TOKEN = re.compile(r"^\d{20},\d{20}$")


def event_from(xapi, classes, token, timeout=60.0):
    return getattr(xapi.event, "from")(classes, token, float(timeout))


def ops(batch, cls=None):
    return [
        (e["class"], e["operation"], e["ref"])
        for e in batch["events"]
        if cls is None or e["class"] == cls
    ]


def start_token(xapi):
    """A token of now (the pool touched, then everything up to it read)."""
    token = xapi.event.inject("pool", xapi.pool.get_all()[0])
    return event_from(xapi, ["*"], token)["token"]


# --------------------------------------------------------------------------- listMethods
def test_list_methods_needs_no_session_and_is_a_bare_array(pool):
    # gen_server.ml: system.listMethods; api_server.ml callback writes it without Status/Value
    head, body = http(pool, xml_call("system.listMethods"))
    assert b"200 OK" in head
    assert body.startswith(
        b'<?xml version="1.0"?><methodResponse><params><param><value><array><data>'
    )
    assert b"Status" not in body
    names = re.findall(rb"<value>([^<]*)</value>", body)
    names = [n.decode() for n in names]
    for name in ("VM.get_all_records", "host.call_plugin", "event.from", "event.inject"):
        assert name in names
    assert "session.login_with_password" in names and not [n for n in names if "Async" in n]
    # event has its own messages only; session has no get_all_records (datamodel.ml)
    assert "event.get_record" not in names and "session.get_all_records" not in names
    # what it lists is served
    xapi = pool.session().xenapi
    assert xapi.VM.get_all_records() and xapi.host.get_all()


def test_list_methods_over_json_rpc(pool):
    for v2 in (False, True):
        _head, body = http(pool, json_body("system.listMethods", []), path="/jsonrpc")
        doc = json.loads(body)
        assert doc["error"] is None and "task.get_all_records" in doc["result"]
        _head, body = http(pool, json_body("system.listMethods", [], v2=v2), path="/jsonrpc")
        assert "event.from" in json.loads(body)["result"]


# --------------------------------------------------------------------------- event.from
def test_from_the_empty_token_adds_every_object(pool, xapi):
    batch = event_from(xapi, ["*"], "")
    assert TOKEN.match(batch["token"])
    got = set((e["class"], e["ref"]) for e in batch["events"] if e["operation"] == "add")
    for cls in ("VM", "host", "pool", "SR", "PBD", "VBD", "VDI", "VM_metrics", "host_metrics"):
        for ref in getattr(xapi, cls).get_all():
            assert (cls.lower(), ref) in got
    # no events for session and secret (datamodel.ml gen_events:false)
    assert not [e for e in batch["events"] if e["class"] in ("session", "secret")]
    ev = [e for e in batch["events"] if e["class"] == "vm"][0]
    assert ev["timestamp"] == "0.0" and int(ev["id"]) > 0
    assert ev["snapshot"] == xapi.VM.get_record(ev["ref"])
    counts = batch["valid_ref_counts"]
    assert counts["vm"] == len(xapi.VM.get_all()) and counts["session"] >= 1
    assert counts["task"] == 0


def test_valid_ref_counts_are_int32_on_the_wire(pool):
    s = pool.session()._session
    _head, body = http(
        pool,
        xml_call(
            "event.from",
            "<value>%s</value>" % s,
            "<value><array><data><value>pool</value></data></array></value>",
            "<value></value>",
            "<value><double>5</double></value>",
        ),
    )
    # event_types.ml rpc_of_event_from: Rpc.Int32, which ocaml-rpc writes as <i4>
    assert b"<member><name>pool</name><value><i4>1</i4></value></member>" in body
    _head, body = http(pool, json_body("event.from", [s, ["vm"], "", 5.0]), path="/jsonrpc")
    doc = json.loads(body)["result"]
    assert doc["valid_ref_counts"]["pool"] == 1
    # a snapshot's int fields are numbers in JSON, as API.rpc_of_VM_t writes them
    snap = doc["events"][0]["snapshot"]
    assert isinstance(snap["memory_static_max"], int) and isinstance(snap["domid"], int)


def test_from_a_token_gives_a_mod_with_its_snapshot(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    token = start_token(xapi)
    xapi.VM.add_to_other_config(vm, "k", "v")
    batch = event_from(xapi, ["VM"], token)
    assert ops(batch) == [("vm", "mod", vm)]
    assert batch["events"][0]["snapshot"]["other_config"]["k"] == "v"
    assert batch["token"] > token
    # an object made and gone between two looks gives nothing (collect_events: created
    # after the token); a class without events gives nothing either
    token = batch["token"]
    vbd = xapi.VBD.create(vbd_rec(xapi.VM.get_by_name_label("vm-2")[0], xapi.VDI.get_all()[0]))
    xapi.VBD.destroy(vbd)
    xapi.secret.create({"value": "s"})
    assert [e for e in event_from(xapi, ["vbd", "secret"], token, 0.2)["events"]] == []


def vbd_rec(vm, vdi):
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": "5",
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def test_del_has_no_snapshot_and_relations_are_modified(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    vdi = xapi.VDI.get_all()[0]
    token = start_token(xapi)
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    batch = event_from(xapi, ["vm", "vdi", "vbd"], token)
    # eventgen.ml Create: `add` for the row, `mod` for the rows it refers to
    assert ("vbd", "add", vbd) in ops(batch)
    assert ("vm", "mod", vm) in ops(batch) and ("vdi", "mod", vdi) in ops(batch)
    vm_ev = [e for e in batch["events"] if e["ref"] == vm][0]
    assert vbd in vm_ev["snapshot"]["VBDs"]
    token = batch["token"]
    xapi.VBD.destroy(vbd)
    batch = event_from(xapi, ["vbd", "vm"], token)
    dels = [e for e in batch["events"] if e["operation"] == "del"]
    assert [(e["class"], e["ref"]) for e in dels] == [("vbd", vbd)]
    assert "snapshot" not in dels[0]
    assert ("vm", "mod", vm) in ops(batch)
    # a subscription to one object sees that object only
    token = batch["token"]
    other = xapi.VM.get_by_name_label("vm-3")[0]
    xapi.VM.add_to_other_config(other, "a", "1")
    xapi.VM.add_to_other_config(vm, "a", "1")
    assert ops(event_from(xapi, ["VM/" + vm], token)) == [("vm", "mod", vm)]


def test_token_parse_failure(pool, xapi):
    for bad in ("garbage", "1,2,3", "x,1", "1,", ",1"):
        details = fails("EVENT_FROM_TOKEN_PARSE_FAILURE", event_from, xapi, ["*"], bad, 1.0)
        assert details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", bad]


def test_from_times_out_with_an_empty_batch_and_the_same_token(pool, xapi):
    token = start_token(xapi)
    batch = event_from(xapi, ["vm"], token, 0.2)
    assert batch["events"] == [] and batch["token"] == token


def test_from_blocks_until_a_change_without_holding_the_database(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-2")[0]  # halted: nothing else changes it
    token = start_token(xapi)
    out = {}

    def wait():
        out["batch"] = event_from(pool.session().xenapi, ["VM/" + vm], token, 60.0)

    waiter = threading.Thread(target=wait)
    waiter.start()
    # the waiting call holds no lock others need: calls go on, changes of other objects
    # do not answer it
    for n in range(5):
        assert xapi.VM.get_record(vm)["uuid"]
        xapi.pool.add_to_other_config(xapi.pool.get_all()[0], "n%d" % n, "x")
        xapi.VM.add_to_other_config(xapi.VM.get_by_name_label("vm-3")[0], "n%d" % n, "x")
    assert waiter.is_alive()
    xapi.VM.set_name_description(vm, "changed")
    waiter.join(60)
    assert not waiter.is_alive()
    assert ops(out["batch"]) == [("vm", "mod", vm)]


def test_logout_ends_a_waiting_from_with_session_invalid(pool):
    s = pool.session()
    token = start_token(s.xenapi)
    out = {}

    # the same session on a connection of its own, raw (XenAPI turns SESSION_INVALID
    # into a 401 fault)
    proxy = xmlrpc.client.ServerProxy(pool.url)

    def wait():
        out["answer"] = getattr(proxy.event, "from")(s._session, ["vm"], token, 60.0)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)  # the call is most likely waiting by now; either way it must fail
    ref = s._session
    s.xenapi.session.logout()
    waiter.join(60)
    assert out["answer"]["ErrorDescription"] == ["SESSION_INVALID", ref]


# --------------------------------------------------------------------------- event.inject
def test_inject_returns_a_token_that_sees_the_object(pool, xapi):
    host = xapi.host.get_all()[0]
    token = xapi.event.inject("host", host)
    assert TOKEN.match(token) and token.endswith(",00000000000000000000")
    batch = event_from(xapi, ["host"], token)
    assert ops(batch) == [("host", "mod", host)]
    assert fails("HANDLE_INVALID", xapi.event.inject, "VM", host) == ["HANDLE_INVALID", "VM", host]
    assert fails("HANDLE_INVALID", xapi.event.inject, "host", "OpaqueRef:x")[1:] == [
        "host",
        "OpaqueRef:x",
    ]


# --------------------------------------------------------------------------- tasks
def test_tasks_have_add_mod_del_events(pool, xapi):
    install(pool, "probe", PLUGIN)
    token = start_token(xapi)
    task = xapi.Async.host.call_plugin(xapi.host.get_all()[0], "probe", "echo", {"a": "b"})
    wait_done(xapi, task)
    seen, status = [], None
    for _ in range(50):  # bounded: each look returns as soon as there is something
        batch = event_from(xapi, ["task"], token, 5.0)
        token = batch["token"]
        seen += ops(batch)
        done = [e for e in batch["events"] if e["ref"] == task and "snapshot" in e]
        if done:
            status = done[-1]["snapshot"]["status"]
        if status == "success":
            break
    assert ("task", "add", task) in seen and status == "success"
    assert done[-1]["snapshot"]["name_label"] == "Async.host.call_plugin"
    assert "session" not in done[-1]["snapshot"]  # internal_only, as in get_record
    xapi.task.destroy(task)
    assert ops(event_from(xapi, ["task"], token)) == [("task", "del", task)]


# --------------------------------------------------------------------------- next
def test_next_needs_a_registration(pool):
    s = pool.session()
    details = fails("SESSION_NOT_REGISTERED", s.xenapi.event.next)
    # context.ml trackid_of_session: a hash of the session, never the session itself
    assert details[1] == "trackid=" + hashlib.md5(s._session.encode()).hexdigest()


def test_register_next_unregister(pool, xapi):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    first = int(xapi.event.get_current_id())
    xapi.event.register(["vm", "host"])
    xapi.VM.add_to_other_config(vm, "k", "1")
    secret = xapi.secret.create({"value": "x"})  # no events
    events = xapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)]
    ev = events[0]
    assert ev["snapshot"]["other_config"]["k"] == "1" and int(ev["id"]) >= first
    # string_of_float (Unix.time ()): "1733542291.12"
    assert re.match(r"^\d{10}\.\d*$", ev["timestamp"])
    # del carries the last record in event.next's queue (eventgen.ml PreDelete)
    halted = xapi.VM.get_by_name_label("vm-2")[0]
    xapi.event.register(["secret", "vbd"])
    vbd = xapi.VBD.create(vbd_rec(halted, xapi.VDI.get_all()[0]))
    xapi.VBD.destroy(vbd)
    xapi.secret.destroy(secret)
    events = xapi.event.next()
    events = [e for e in events if e["class"] == "vbd"]
    assert [e["operation"] for e in events] == ["add", "del"]
    assert events[1]["snapshot"]["VM"] == halted
    xapi.event.unregister(["vm", "host", "secret", "vbd"])
    assert int(xapi.event.get_current_id()) > first


def test_events_lost_when_the_queue_dropped_them(pool, xapi):
    pool.sim.events.max_queue_size = 2000  # xapi's is 10 MB: the same rule, smaller
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    xapi.event.register(["vm"])
    for i in range(5):
        xapi.VM.add_to_other_config(vm, "k%d" % i, "x" * 100)
    fails("EVENTS_LOST", xapi.event.next)


@pytest.mark.parametrize("path", ["/", "/jsonrpc"])
def test_from_over_both_transports_answers_an_event_batch(pool, path):
    s = pool.session()._session
    if path == "/":
        body = xml_call(
            "event.from",
            "<value>%s</value>" % s,
            "<value><array><data><value>host</value></data></array></value>",
            "<value></value>",
            "<value><double>1.5</double></value>",
        )
        _h, out = http(pool, body)
        assert b"<name>token</name>" in out and b"<name>operation</name><value>add</value>" in out
    else:
        _h, out = http(pool, json_body("event.from", [s, ["host"], "", 1.5], v2=True), path=path)
        doc = json.loads(out)["result"]
        assert [e["operation"] for e in doc["events"]] == ["add"] * 3


def test_a_negative_timeout_waits_for_a_change(pool, xapi):
    # xapi_event.ml from: Clock.Timer.s_to_span gives no span for a negative timeout, and the
    # call then waits up to a day; it is not an immediate empty answer.
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    token = start_token(xapi)
    out = {}
    waiter = threading.Thread(
        target=lambda: out.update(batch=event_from(pool.session().xenapi, ["vm"], token, -1.0))
    )
    waiter.start()
    time.sleep(0.3)
    xapi.VM.set_name_description(vm, "after")
    waiter.join(60)
    assert ops(out["batch"]) == [("vm", "mod", vm)]


def test_logout_ends_a_waiting_next_with_session_invalid(pool):
    s = pool.session()
    s.xenapi.event.register(["vm"])
    proxy = xmlrpc.client.ServerProxy(pool.url)
    out = {}
    waiter = threading.Thread(
        target=lambda: out.update(answer=proxy.event.next(s._session))  # no timeout: it waits
    )
    waiter.start()
    time.sleep(0.3)
    ref = s._session
    s.xenapi.session.logout()
    waiter.join(60)
    assert out["answer"]["ErrorDescription"] == ["SESSION_INVALID", ref]
