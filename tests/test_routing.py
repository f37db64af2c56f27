"""Routing without client lookups (issue 12): the plugin resolves the VM and answers
XENVOL_WRONG_HOST naming its host; the client re-sends there and remembers it; routing="native"
goes through VM.call_host_plugin; a sync call that times out is asked again by op id."""
import pytest

import xenvol
from xenvol import errors

from conftest import PluginError, plugin, state
from test_plugin_iscsi import placed
from test_plugin_session import file_volume


def _off_master(pool, xapi):
    """A running VM whose host is not the master."""
    master = xapi.pool.get_master(xapi.pool.get_all()[0])
    for name in ("vm-1", "vm-2", "vm-3", "vm-4"):
        ref = xapi.VM.get_by_name_label(name)[0]
        if xapi.VM.get_power_state(ref) == "Running" and xapi.VM.get_resident_on(ref) != master:
            return name, placed(pool, xapi, name)
    pytest.skip("no running VM on a member")


def test_the_plugin_names_the_vms_host_and_changes_nothing(ppool):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    master = [h for h in ppool.sim.hosts if h.ref == xapi.pool.get_master(
        xapi.pool.get_all()[0])][0]
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
    assert out["vm_uuid"] == vm_uuid and out["api_level"] == "1.1"
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
        client._router.routes[vm_uuid] = {"host_ref": other.ref, "vm_ref": vm_ref,
                                   "vm_running": False}
        att = client.attach(info, vm_uuid)
        assert att.host_uuid == host.uuid and att.plugged is True
        assert client._router.routes[vm_uuid]["host_ref"] == host.ref
        client.detach(attachment=att)
        assert xapi.VM.get_current_operations(vm_ref) == {}
    after = state(ppool)
    for cls in ("SR", "PBD", "VBD", "VDI", "secret"):
        assert after.get(cls) == before.get(cls), cls


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
        fh.write(text.replace('API_LEVEL = "1.1"', 'API_LEVEL = "1.0"'))
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        with pytest.raises(errors.PluginIncompatible) as e:
            client.attach(file_volume(host), vm_uuid)
        assert "API 1.0" in e.value.message and "needs API 1.1" in e.value.message
