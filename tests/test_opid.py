"""An op id is bound to its call (issue 19 §3): a kept result answers only a retry of the same
function with the same arguments; any other call with the id is refused
XENVOL_OP_ID_CONFLICT, on the host that ran it and on any other (a migration between), and the
client raises only xenvol.errors. Assertions are on pool state."""

import json
import os

import pytest

import xenvol
from conftest import PluginError, plugin
from conftest import state as full_state
from racewindow import in_background, wait_for_call
from test_integrators import ci, mobile_vm
from test_plugin_iscsi import placed
from test_plugin_session import file_volume
from xenvol import errors

CHAP = ("opid-user", "Opid-Chap-Secret-7")


def state(pool):
    """The pool's objects, less the `dirty` mark the master's periodic scan clears when it
    comes to it (xapi_sr.ml scan), which no call here decides."""
    snap = full_state(pool)
    for rec in snap.get("SR", {}).values():
        rec["other_config"].pop("dirty", None)
    return snap


def vbds_of(xapi, vm_ref):
    """The VM's xenvol disks: {vbd uuid: VDI uuid}."""
    out = {}
    for vbd in xapi.VM.get_VBDs(vm_ref):
        rec = xapi.VBD.get_record(vbd)
        if rec["other_config"].get("xenvol") == "true":
            out[rec["uuid"]] = xapi.VDI.get_uuid(rec["VDI"])
    return out


def results(host):
    d = os.path.join(host.root, "var/lib/xenvol/results")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_another_volume_or_function_with_a_used_op_id_is_refused(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    a, b = file_volume(host), file_volume(host)
    out = plugin(xapi, host, "attach_volume", connection_info=a, vm_uuid=vm_uuid, op_id="op-A")
    attached = vbds_of(xapi, vm_ref)
    assert list(attached.values()) == [a["data"]["vdi_uuid"]]
    # The same call again: the kept result, nothing new.
    again = plugin(xapi, host, "attach_volume", connection_info=a, vm_uuid=vm_uuid, op_id="op-A")
    assert again == out and vbds_of(xapi, vm_ref) == attached
    # Volume B with A's id: refused, B never attached.
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=b, vm_uuid=vm_uuid, op_id="op-A")
    assert e.value.code == "XENVOL_OP_ID_CONFLICT"
    assert e.value.details == {"op_id": "op-A", "fn": "attach_volume"}
    assert "other arguments" in e.value.message
    assert vbds_of(xapi, vm_ref) == attached
    # detach with the attach's id: refused, nothing detached.
    snap = state(ppool)
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], op_id="op-A")
    assert e.value.code == "XENVOL_OP_ID_CONFLICT"
    assert e.value.details == {"op_id": "op-A", "fn": "attach_volume"}
    assert state(ppool) == snap
    # The same with the kept result gone (a day later, or another host): the disk says which
    # call made it.
    for name in results(host):
        os.unlink(os.path.join(host.root, "var/lib/xenvol/results", name))
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], op_id="op-A")
    assert e.value.code == "XENVOL_OP_ID_CONFLICT"
    assert state(ppool) == snap
    # A detach of its own id detaches.
    gone = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], op_id="op-D")
    assert [d["vbd_uuid"] for d in gone["detached"]] == [out["vbd_uuid"]]
    assert vbds_of(xapi, vm_ref) == {}


def test_client_detach_with_the_attachs_op_id_raises_op_id_conflict(ppool):
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        vm_ref, vm_uuid, host = placed(ppool, client.x, "vm-1")
        att = client.attach(file_volume(host), vm_uuid, op_id="cinder-attachment-1")
        snap = state(ppool)
        with pytest.raises(errors.OpIdConflict) as e:
            client.detach(attachment=att, op_id="cinder-attachment-1")
        assert (e.value.op_id, e.value.fn) == ("cinder-attachment-1", "attach_volume")
        assert isinstance(e.value, errors.XenvolError) and e.value.exit_code == 2
        assert state(ppool) == snap
        # Another process (no memory of where it sent what) meets the same refusal.
        with xenvol.Client(ppool.url, "root", ppool.info["password"]) as other:
            with pytest.raises(errors.OpIdConflict):
                other.detach(vm=vm_uuid, mountpoint=att.device, op_id="cinder-attachment-1")
        assert state(ppool) == snap
        assert [a.vbd_uuid for a in client.detach(attachment=att)] == [att.vbd_uuid]


def test_a_conflicting_call_is_refused_while_the_first_runs(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    ppool.admin.set_latency("VBD.create", 5.0, "plugin")
    t, out = in_background(
        lambda: plugin(
            xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-R"
        )
    )
    try:
        wait_for_call(ppool, "VBD.create", t, out)
        other = ppool.session().xenapi
        with pytest.raises(PluginError) as e:
            plugin(other, host, "detach_volume", vm_uuid=vm_uuid, mountpoint="1", op_id="op-R")
        assert e.value.code == "XENVOL_OP_ID_CONFLICT" and "not finished" in e.value.message
        assert t.is_alive()  # refused at once, not after the attach
    finally:
        t.join(60)
    ppool.admin.clear()
    assert out["r"]["vbd_uuid"] in vbds_of(xapi, vm_ref)


def test_a_retry_with_new_secrets_is_the_same_call_another_password_is_not(ppool, peers):
    """The client stashes the CHAP password in a new XAPI secret for each call: its retry
    names another uuid for the same password, and is answered; another password is not."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = peers.iscsi_info(iqn, 1, chap=CHAP)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        vm_ref, vm_uuid, host = placed(ppool, client.x, "vm-1")
        att = client.attach(info, vm_uuid, op_id="op-chap")
        again = client.attach(info, vm_uuid, op_id="op-chap")
        assert again == att
        assert list(vbds_of(client.x, vm_ref)) == [att.vbd_uuid]
        # The retry's client secret was consumed as the first call's was.
        left = [
            r
            for r in client.x.secret.get_all_records().values()
            if r["other_config"].get("xenvol") == "client"
        ]
        assert left == []
        wrong = peers.iscsi_info(iqn, 1, chap=(CHAP[0], "Another-Secret-99"))
        with pytest.raises(errors.OpIdConflict):
            client.attach(wrong, vm_uuid, op_id="op-chap")
        # The kept record holds a digest, never an argument.
        kept = open(os.path.join(host.root, "var/lib/xenvol/results/op-chap.json")).read()
        assert CHAP[1] not in kept and iqn not in kept and "Another" not in kept
        assert json.loads(kept)["fn"] == "attach_volume"
        client.detach(attachment=att)


def test_a_retry_after_a_migration_is_answered_not_run_again(ppool, peers):
    """The kept result is on the host that ran the call; the VM moved to another host since.
    The client sends the retry where it sent the call; another client, knowing nothing,
    reaches the new host: the disk there says which call made it."""
    iqn = peers.new_target(luns=(1,), size_mb=8)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        xapi = client.x
        ref, vm_uuid, source = mobile_vm(ppool, xapi)
        att = client.attach(ci(peers, iqn), vm_uuid, op_id="op-mig")
        dest = ppool.host(2)
        client.migrate(vm_uuid, dest.uuid)
        # Another call for the VM teaches the client its new host (WRONG_HOST from the old).
        assert client.detach(vm=vm_uuid, mountpoint="5") == []
        assert client._router.routes[vm_uuid]["host_ref"] == dest.ref
        ppool.admin.clear()
        again = client.attach(ci(peers, iqn), vm_uuid, op_id="op-mig")
        assert again == att
        assert list(vbds_of(xapi, ref)) == [att.vbd_uuid]
        ran = dict((m, c) for m, c in ppool.admin.counts().items() if "plugin" in c)
        assert "VBD.create" not in ran and "SR.introduce" not in ran, ran
        with xenvol.Client(ppool.url, "root", ppool.info["password"]) as other:
            snap = state(ppool)
            with pytest.raises(errors.OpIdConflict):
                other.detach(attachment=att, op_id="op-mig")
            # Another volume with the id, on the VM's new host: refused, rolled back.
            iqn2 = peers.new_target(luns=(1,), size_mb=8)
            with pytest.raises(errors.OpIdConflict) as e:
                other.attach(ci(peers, iqn2), vm_uuid, op_id="op-mig")
            assert e.value.host == dest.uuid
            assert state(ppool) == snap
            assert list(vbds_of(xapi, ref)) == [att.vbd_uuid]
        client.detach(attachment=att)
        assert vbds_of(xapi, ref) == {}


@pytest.mark.parametrize(
    "damage",
    [b"\xff\xfe{}", b"42", b'"a string"', b'{"result": {"vbd_uuid": "x"}}', b'{"xenvol-result": 1'],
    ids=["non-utf8", "number", "string", "old-format", "truncated"],
)
def test_a_damaged_kept_result_is_set_aside_and_its_op_id_refused(ppool, damage):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    d = os.path.join(host.root, "var/lib/xenvol/results")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "op-bad.json"), "wb") as fh:
        fh.write(damage)
    before = state(ppool)
    for _ in range(2):  # set aside, then still refused
        with pytest.raises(PluginError) as e:
            plugin(
                xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-bad"
            )
        assert e.value.code == "XENVOL_OP_ID_CONFLICT" and "unknown" in e.value.message
    assert state(ppool) == before
    assert results(host) == ["op-bad.json.damaged"]
    items = [i for i in plugin(xapi, host, "gc")["items"] if i["kind"] == "damaged"]
    assert [(i["id"], i["op_id"]) for i in items] == [("op-bad.json.damaged", "op-bad")]
    assert plugin(xapi, host, "recover")["damaged"][0]["kind"] == "result"
    # The host goes on: other op ids work.
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-ok")
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_the_same_request_again_is_answered_though_its_secret_is_consumed(ppool, peers):
    """A request asked again as it was (the client's re-ask after an HTTP timeout) names the
    secret the first run consumed: it matches as passed."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    ref = xapi.secret.create({"value": CHAP[1], "other_config": {"xenvol": "client"}})
    info = peers.iscsi_info(iqn, 1, chap=CHAP, secret_uuid=xapi.secret.get_uuid(ref))
    args = dict(connection_info=info, vm_uuid=vm_uuid, op_id="op-again")
    out = plugin(xapi, host, "attach_volume", **args)
    assert ref not in xapi.secret.get_all()  # consumed
    assert plugin(xapi, host, "attach_volume", **args) == out
    assert list(vbds_of(xapi, vm_ref)) == [out["vbd_uuid"]]
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])


def test_an_op_id_pinned_to_a_host_that_went_offline_goes_to_the_vms_host(ppool):
    """The host that ran (or was sent) the op id is down: its kept result is out of reach;
    the retry goes where the VM's work runs now, which answers from the pool's state."""
    from test_client_offline import other_member
    from test_routing import _off_master

    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    dead = other_member(ppool, xapi, host)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        client._router.sent["op-off"] = dead.ref
        ppool.admin.host_live(dead.uuid, False)
        att = client.attach(file_volume(host), vm_uuid, op_id="op-off")
        assert att.host_uuid == host.uuid and att.plugged is True
        assert client._router.sent["op-off"] == host.ref
        client.detach(attachment=att)
    assert vbds_of(xapi, vm_ref) == {}


def test_a_wrong_host_refusal_leaves_the_clients_secret_any_other_end_consumes_it(ppool, peers):
    """runner.run consumes the client-made secrets a journaled call's arguments name when the
    call ends, however it ends, except a XENVOL_WRONG_HOST refusal: the client sends that call
    again, with them, to the host the answer names."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    xapi = ppool.session().xenapi
    _vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    elsewhere = [h for h in ppool.sim.hosts if h.ref != host.ref][0]
    ref = xapi.secret.create({"value": CHAP[1], "other_config": {"xenvol": "client"}})
    info = peers.iscsi_info(iqn, 1, chap=CHAP, secret_uuid=xapi.secret.get_uuid(ref))
    before = full_state(ppool)
    with pytest.raises(PluginError) as e:
        plugin(
            xapi, elsewhere, "attach_volume", connection_info=info, vm_uuid=vm_uuid, route="strict"
        )
    assert e.value.code == "XENVOL_WRONG_HOST"
    assert full_state(ppool) == before  # the secret with the rest
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, mode="rx")
    assert e.value.code == "XENVOL_INVALID_ARGUMENT"
    assert ref not in xapi.secret.get_all()  # refused otherwise: consumed
