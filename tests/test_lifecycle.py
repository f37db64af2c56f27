"""Operations that survive their caller (issue 10): the plugin killed (SIGKILL, by the
simulator when it makes its nth XAPI call) or the client killed at every step, faults in the
release, client timeouts, Ctrl-C, a destroyed VM, a rebooted host, and gc."""

import json
import subprocess
import sys

import pytest

import xenvol
from conftest import PluginError, plugin, state
from killcheck import (
    default_settings,
    journals,
    killed_then_retried,
    plugin_calls,
    release_args,
    release_each_kill,
)
from racewindow import in_background, wait_for_call
from test_plugin_iscsi import placed
from test_plugin_session import file_volume
from xenvol import errors

CHAP = ("xenvol-user", "Chap-Secret-0123")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_attach_killed_at_every_step_then_again(ppool, when):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    for n, out in killed_then_retried(
        ppool, xapi, host, "attach_volume", when, connection_info=info, vm_uuid=vm_uuid
    ):
        assert out["plugged"] is True, n
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
        assert state(ppool) == before, n
        assert journals(host) == [], n


@pytest.mark.slow
@pytest.mark.parametrize("fn", ["detach_volume", "disconnect_volume"])
def test_release_killed_at_every_step_then_again(ppool, fn):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)

    def nothing_left(n):
        assert state(ppool) == before, n
        assert journals(host) == [], n

    release_each_kill(ppool, xapi, host, fn, "after", info, vm_uuid, nothing_left)


@pytest.mark.slow
@pytest.mark.parametrize("fn", ["detach_volume", "disconnect_volume"])
def test_fault_at_every_release_call_then_a_plain_retry(ppool, fn):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    args = release_args(xapi, host, fn, info, vm_uuid)
    ppool.admin.clear()
    plugin(xapi, host, fn, **args)
    counts = ppool.admin.counts()
    calls = sorted(
        (m, c["plugin"])
        for m, c in counts.items()
        if c.get("plugin") and not m.startswith("session.")
    )
    faulted = 0
    for method, times in calls:
        for nth in range(1, times + 1):
            args = release_args(xapi, host, fn, info, vm_uuid)
            ppool.admin.clear()
            ppool.admin.inject_fault(
                method, ["INTERNAL_ERROR", "injected"], {"nth": nth, "caller": "plugin"}
            )
            try:
                plugin(xapi, host, fn, **args)
            except PluginError:
                faulted += 1
            ppool.admin.clear()
            plugin(xapi, host, fn, **args)
            assert state(ppool) == before, (method, nth)
    assert faulted > 5


def test_client_killed_at_every_step_leaves_nothing(ppool, peers):
    """The client (a separate process) killed while the plugin makes its nth call: the
    plugin's task runs on; the same attach again succeeds, and after a detach nothing is
    left, not even the secret the client made for the CHAP password."""
    default_settings(ppool)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = peers.iscsi_info(iqn, chap=CHAP)
    before = state(ppool)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        ppool.admin.clear()
        client.detach(attachment=client.attach(info, "vm-1"))
        n_calls = plugin_calls(ppool)
        assert state(ppool) == before
        script = (
            "import json, sys, xenvol\n"
            "c = xenvol.Client(sys.argv[1], 'root', sys.argv[2])\n"
            "c.attach(json.loads(sys.argv[3]), 'vm-1')\n"
        )
        for n in range(1, n_calls, 3):
            proc = subprocess.Popen(
                [sys.executable, "-c", script, ppool.url, ppool.info["password"], json.dumps(info)]
            )
            ppool.admin.clear()
            ppool.admin.kill_plugin("*", {"nth": n, "pid": proc.pid})
            proc.wait()
            ppool.admin.clear()
            att = client.attach(info, "vm-1")
            client.detach(attachment=att)
            assert client.gc() == [], n
            snap = state(ppool)
            # A secret the killed client made is consumed by its plugin call when that ends
            # (it may still be running); none is anything but a tagged client secret.
            for uuid in set(snap["secret"]) - set(before["secret"]):
                assert snap["secret"][uuid]["other_config"]["xenvol"] == "client", n
            snap["secret"] = before["secret"]
            assert snap == before, n


def test_cancel_stops_at_the_next_step_and_rolls_back(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    ppool.admin.set_latency("VBD.create", 2.0, "plugin")
    t, out = in_background(
        lambda: plugin(
            xapi,
            host,
            "attach_volume",
            connection_info=info,
            vm_uuid=vm_uuid,
            op_id="op-cancel-1",
        )
    )
    wait_for_call(ppool, "VBD.create", t, out)
    other = ppool.session().xenapi  # a session is one connection: one call at a time
    assert plugin(other, host, "cancel", operation="op-cancel-1")["state"] == "cancelling"
    t.join(60)
    assert isinstance(out["r"], PluginError) and out["r"].code == "XENVOL_CANCELLED"
    ppool.admin.clear()
    assert state(ppool) == before and journals(host) == []


def test_a_rebooted_host_recovers_the_journal_of_the_last_boot(ppool):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    ppool.admin.kill_plugin("VBD.plug", {"host": host.uuid})
    with pytest.raises(PluginError):
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    ppool.admin.reboot_host(host.uuid)  # the journal is kept; its process and boot are gone
    assert len(journals(host)) == 1
    dead = plugin(xapi, host, "gc")["items"]
    assert [i["kind"] for i in dead] == ["journal"]
    ppool.admin.clear()
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert out["plugged"] is True and journals(host) == []
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


@pytest.mark.slow
def test_client_timeout_then_the_same_op_id_returns_the_result(ppool, monkeypatch):
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        _ref, vm_uuid, host = placed(ppool, client.x, "vm-1")
        info = file_volume(host)
        monkeypatch.setattr(client._plugin, "wait_limit", lambda host_ref: 0.5)
        ppool.admin.set_latency("VBD.plug", 2.0, "plugin")
        with pytest.raises(errors.OperationTimedOut) as e:
            client.attach(info, vm_uuid)
        assert "attachments() tells" in e.value.message
        monkeypatch.undo()
        att = client.attach(info, vm_uuid, op_id=e.value.op_id)
        assert att.plugged is True
        assert [a.vbd_uuid for a in client.attachments(vm_uuid)] == [att.vbd_uuid]
        ppool.admin.clear()
        again = client.attach(info, vm_uuid, op_id=e.value.op_id)
        assert again == att
        client.detach(attachment=att)


@pytest.mark.slow
def test_gc_removes_what_a_vanished_vm_left_and_nothing_else(ppool):
    """A VM destroyed with a volume attached (VM.destroy takes its VBDs, not its VDIs): the SR,
    PBD and a client secret whose both sides died are left; gc lists them, --apply removes
    them, and objects xenvol did not make stay."""
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    foreign = xapi.secret.create({"value": "not-ours", "other_config": {}})
    before = state(ppool)
    xapi.secret.create(
        {
            "value": "pw",
            "other_config": {"xenvol": "client", "xenvol-op": "op-dead", "xenvol-ttl": "0"},
        }
    )
    plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    xapi.VM.hard_shutdown(vm_ref)
    xapi.VM.destroy(vm_ref)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        found = client.gc()
        assert sorted(i["kind"] for i in found) == ["secret", "sr"]
        assert state(ppool)["SR"].keys() != before["SR"].keys()
        done = client.gc(dry_run=False)
        assert all(i["done"] for i in done)
        assert client.gc() == []
    after = state(ppool)  # the VM itself is gone; its root disk stays, as xapi leaves VDIs
    for cls in ("SR", "PBD", "secret"):
        assert after[cls] == before[cls]
    assert after["VDI"].keys() == before["VDI"].keys()
    xapi.secret.destroy(foreign)


def test_cli_gc(ppool, monkeypatch, capsys):
    from xenvol import cli

    monkeypatch.setenv("XENVOL_PASSWORD", ppool.info["password"])
    assert cli.main(["--url", ppool.url, "--json", "gc"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["--url", ppool.url, "gc", "--apply"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to collect"
