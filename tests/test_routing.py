"""Routing without client lookups (issue 12): the plugin resolves the VM and answers
XENVOL_WRONG_HOST naming its host; the client re-sends there and remembers it; routing="native"
goes through VM.call_host_plugin; a sync call that times out is asked again by op id; the
pool master's host ref is kept on disk for the next process."""

import json
import shutil
import stat
import tempfile
import types
from urllib.parse import urlsplit

import pytest

import xenvol
from conftest import API_LEVEL, PLUGINS, PluginError, plugin, state
from test_plugin_iscsi import placed
from test_plugin_session import file_volume
from xapisim import cli as xapisim_cli
from xenvol import errors
from xenvol.hostcache import HostCache


def _off_master(pool, xapi):
    """A running VM whose host is not the master."""
    master = xapi.pool.get_master(xapi.pool.get_all()[0])
    for name in ("vm-1", "vm-2", "vm-3", "vm-4"):
        ref = xapi.VM.get_by_name_label(name)[0]
        if xapi.VM.get_power_state(ref) == "Running" and xapi.VM.get_resident_on(ref) != master:
            return name, placed(pool, xapi, name)
    pytest.skip("no running VM on a member")


@pytest.mark.slow
def test_the_plugin_names_the_vms_host_and_changes_nothing(ppool):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    master = [h for h in ppool.sim.hosts if h.ref == xapi.pool.get_master(xapi.pool.get_all()[0])][
        0
    ]
    info = file_volume(host)
    before = state(ppool)
    with pytest.raises(PluginError) as e:
        plugin(xapi, master, "attach_volume", connection_info=info, vm=name, route="strict")
    assert e.value.code == "XENVOL_WRONG_HOST"
    assert e.value.details["host_uuid"] == host.uuid and e.value.details["host_ref"] == host.ref
    assert e.value.details["vm_uuid"] == vm_uuid and e.value.details["vm_ref"] == vm_ref
    assert state(ppool) == before
    # On the VM's host the same call is served.
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm=name, route="strict")
    assert out["vm_uuid"] == vm_uuid and out["api_level"] == API_LEVEL
    assert out["route"] == {"vm_ref": vm_ref, "host_ref": host.ref, "vm_running": True}
    with pytest.raises(PluginError) as e:
        plugin(xapi, master, "detach_volume", vbd_uuid=out["vbd_uuid"], route="strict")
    assert e.value.code == "XENVOL_WRONG_HOST"
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], route="strict")
    assert state(ppool) == before


def test_a_vm_by_name_is_resolved_in_dom0(ppool):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm="no-such-vm")
    assert e.value.code == "XENVOL_VM_NOT_FOUND" and e.value.details["field"] == "vm"
    xapi.VM.set_name_label(xapi.VM.get_by_name_label("vm-2")[0], name)
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm=name)
    assert e.value.code == "XENVOL_INVALID_ARGUMENT" and "give its uuid" in e.value.message


@pytest.mark.slow
@pytest.mark.parametrize("routing", ["host", "native"])
def test_the_client_follows_the_vm_to_its_host(ppool, routing):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    info = file_volume(host)
    before = state(ppool)
    with xenvol.Client(ppool.url, "root", ppool.info["password"], routing=routing) as client:
        att = client.attach(info, name)
        assert att.host_uuid == host.uuid and att.vm_uuid == vm_uuid and att.plugged is True
        client.detach(attachment=att)
        att = client.attach(info, vm_uuid)
        assert att.host_uuid == host.uuid
        # A stale route (the VM moved since; its local disks keep it from migrating here):
        # the host named answers WRONG_HOST, and the call follows the VM.
        client.detach(attachment=att)
        other = [h for h in ppool.sim.hosts if h.ref != host.ref][0]
        client._router.routes[vm_uuid] = {
            "host_ref": other.ref,
            "vm_ref": vm_ref,
            "vm_running": False,
        }
        att = client.attach(info, vm_uuid)
        assert att.host_uuid == host.uuid and att.plugged is True
        assert client._router.routes[vm_uuid]["host_ref"] == host.ref
        client.detach(attachment=att)
        assert xapi.VM.get_current_operations(vm_ref) == {}
    after = state(ppool)
    for cls in ("SR", "PBD", "VBD", "VDI", "secret"):
        assert after.get(cls) == before.get(cls), cls


@pytest.mark.slow
def test_a_sync_call_that_times_out_is_asked_again_by_op_id(ppool, monkeypatch):
    xapi = ppool.session().xenapi
    _name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    info = file_volume(host)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        client.detach(attachment=client.attach(info, vm_uuid))  # route known
        # The first request's HTTP timeout passes while the plugin sits in VBD.plug; the same
        # op id asked again gets the first run's result.
        ppool.admin.set_latency("VBD.plug", 2.0, "plugin")
        monkeypatch.setattr(client._plugin, "wait_limit", lambda host_ref: 30.0)
        real = xenvol.tasks.request_timeout
        first = []

        def short_first(transport, seconds):
            first.append(seconds)
            return real(transport, 0.5 if len(first) == 1 else seconds)

        monkeypatch.setattr(xenvol.tasks, "request_timeout", short_first)
        att = client.attach(info, vm_uuid, op_id="op-retried-1")
        assert len(first) >= 2 and att.plugged is True
        ppool.admin.clear()
        assert [a.vbd_uuid for a in client.attachments(vm_uuid)] == [att.vbd_uuid]
        client.detach(attachment=att)


def test_an_old_plugin_is_named_on_the_first_answer(ppool):
    xapi = ppool.session().xenapi
    _name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    import os

    vfile = os.path.join(host.plugins_dir, "xenvol_dom0", "version.py")
    text = open(vfile).read()
    with open(vfile, "w") as fh:
        fh.write(text.replace('API_LEVEL = "%s"' % API_LEVEL, 'API_LEVEL = "1.0"'))
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        with pytest.raises(errors.PluginIncompatible) as e:
            client.attach(file_volume(host), vm_uuid)
        assert "API 1.0" in e.value.message and "needs API 1.1" in e.value.message


# ---------------------------------------------------------------------- the master's ref on disk
CHAP = ("routeuser", "Routing-Chap-Secret-7")


def _client_calls(pool):
    """{method: n} of the calls clients made on the wire since the last admin.clear()."""
    return dict(
        (m, c["client"])
        for m, c in pool.admin.counts().items()
        if "client" in c and not m.startswith("xapisim.")
    )


def _cached(tmp_path):
    path = tmp_path / "xenvol" / "hosts.json"
    return path, json.loads(path.read_text())["masters"]


def _attach_in_a_new_process(pool, info):
    """A first client of its process attaches with CHAP and logs out; the detach is not
    counted. Returns the client calls of the attach."""
    xenvol.routing._MASTERS.clear()
    pool.admin.clear()
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        att = c.attach(info, "vm-1")
    calls = _client_calls(pool)
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        c.detach(attachment=att)
    return calls


def test_a_new_process_finds_the_master_on_disk(ppool, peers, tmp_path, monkeypatch):
    """Issue 12: the first client of a process attaches with CHAP in 4 round trips (login,
    secret.introduce, host.call_plugin, logout): the master's host ref comes from the user's
    cache file, which only the first client ever wrote, with no secret in it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    info = peers.iscsi_info(peers.new_target(luns=(1,), chap=CHAP), chap=CHAP)
    before = state(ppool)
    first = _attach_in_a_new_process(ppool, info)
    assert first.get("session.get_this_host") == 1  # nothing on disk yet
    path, masters = _cached(tmp_path)
    assert masters == {ppool.url: ppool.sim.master.ref}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert CHAP[1] not in text and ppool.info["password"] not in text
    again = _attach_in_a_new_process(ppool, info)
    assert again == {
        "session.login_with_password": 1,
        "secret.introduce": 1,
        "host.call_plugin": 1,
        "session.logout": 1,
    }
    assert state(ppool) == before


def test_a_stale_master_ref_on_disk_is_looked_up_again(ppool, peers, tmp_path, monkeypatch):
    """Another pool now answers at the URL (the cached ref is not in its database): the
    plugin call fails HANDLE_INVALID, the client drops the ref, asks session.get_this_host,
    re-sends, and writes the new ref."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    info = peers.iscsi_info(peers.new_target(luns=(1,), chap=CHAP), chap=CHAP)
    _attach_in_a_new_process(ppool, info)
    url, old = ppool.url, ppool.sim.master.ref
    ppool.servers.stop()
    sim, servers, pool_info = xapisim_cli.start(
        3,
        4,
        listen="%s:%d" % (urlsplit(url).hostname, urlsplit(url).port),
        state_dir=tempfile.mkdtemp(prefix="xs-", dir="/tmp"),
        plugins=PLUGINS,
    )
    try:
        assert pool_info["url"] == url and sim.master.ref != old
        rebuilt = types.SimpleNamespace(url=url, info=pool_info, sim=sim, admin=ppool.admin)
        before = state(rebuilt)
        calls = _attach_in_a_new_process(rebuilt, info)
        assert calls == {
            "session.login_with_password": 1,
            "secret.introduce": 1,
            "host.call_plugin": 2,
            "session.get_this_host": 1,
            "session.logout": 1,
        }
        assert _cached(tmp_path)[1] == {url: sim.master.ref}
        assert state(rebuilt) == before
    finally:
        servers.stop()
        shutil.rmtree(sim.state_dir, ignore_errors=True)


@pytest.mark.parametrize("off", ["argument", "environment"])
def test_the_cache_file_is_optional(ppool, tmp_path, monkeypatch, off):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if off == "environment":
        monkeypatch.setenv("XENVOL_HOST_CACHE", "off")
    xapi = ppool.session().xenapi
    _name, (_vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    with xenvol.Client(
        ppool.url, "root", ppool.info["password"], host_cache=off != "argument"
    ) as c:
        c.detach(attachment=c.attach(file_volume(host), vm_uuid))
    assert not (tmp_path / "xenvol").exists()


def test_a_cache_file_that_is_not_ours_is_ignored(tmp_path):
    path = tmp_path / "hosts.json"
    cache = HostCache(str(path))
    for text in ("", "[]", '{"masters": ["x"]}', '{"masters": {"u": 3, "v": "no ref"}}'):
        path.write_text(text)
        assert cache.get("u") is None and cache.get("v") is None
    cache.put("u", "OpaqueRef:1")
    cache.put("v", "OpaqueRef:2")
    cache.drop("u")
    assert json.loads(path.read_text())["masters"] == {"v": "OpaqueRef:2"}
    assert [p.name for p in tmp_path.iterdir()] == ["hosts.json"]  # no temporary file left
