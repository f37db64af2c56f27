"""Calls to a host that is not live (issue 20 §2): xapi fails every call forwarded there with
HOST_OFFLINE [host] before it runs (message_forwarding.ml do_op_on -> check_live). A VM call
whose remembered host is offline goes to the master and is re-routed; a call bound to an
offline host is a clear errors.HostOffline naming it; nothing changes."""

import pytest

import xenvol
from conftest import state
from test_plugin_session import file_volume
from test_routing import _off_master
from xenvol import errors


def client(pool, routing="host"):
    return xenvol.Client(pool.url, "root", pool.info["password"], routing=routing)


def other_member(pool, xapi, host):
    master = xapi.pool.get_master(xapi.pool.get_all()[0])
    return [h for h in pool.sim.hosts if h.ref not in (master, host.ref)][0]


def test_a_vm_call_whose_remembered_host_is_offline_is_rerouted_by_the_master(ppool):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    dead = other_member(ppool, xapi, host)
    info = file_volume(host)
    before = state(ppool)
    with client(ppool) as c:
        # What the client last saw: the VM's work on a host that has died since (HA, or an
        # admin, started the VM elsewhere).
        c._router.routes[vm_uuid] = {"host_ref": dead.ref, "vm_ref": vm_ref, "vm_running": False}
        ppool.admin.host_live(dead.uuid, False)
        att = c.attach(info, vm_uuid)
        assert att.host_uuid == host.uuid and att.plugged is True
        assert c._router.routes[vm_uuid]["host_ref"] == host.ref
        c.detach(attachment=att)
    after = state(ppool)
    for cls in ("SR", "PBD", "VBD", "VDI", "secret"):
        assert after.get(cls) == before.get(cls), cls


@pytest.mark.parametrize("routing", ["host", "native"])
def test_a_vm_whose_host_is_offline_is_a_clear_error_naming_the_host(ppool, routing):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    info = file_volume(host)
    ppool.admin.host_live(host.uuid, False)
    before = state(ppool)
    with client(ppool, routing) as c:
        for remembered in (False, True):
            if remembered:
                c._router.routes[vm_uuid] = {
                    "host_ref": host.ref,
                    "vm_ref": vm_ref,
                    "vm_running": True,
                }
            with pytest.raises(errors.HostOffline) as e:
                c.attach(info, vm_uuid)
            name_label = xapi.host.get_name_label(host.ref)
            assert e.value.host == host.uuid and e.value.code == "HOST_OFFLINE"
            assert host.uuid in e.value.message and name_label in e.value.message
            assert e.value.details["host_name"] == name_label
            assert e.value.xapi_error == ["HOST_OFFLINE", host.ref]
    assert state(ppool) == before


def test_host_bound_calls_to_an_offline_host_name_it(ppool):
    xapi = ppool.session().xenapi
    name, (vm_ref, vm_uuid, host) = _off_master(ppool, xapi)
    dead = other_member(ppool, xapi, host)
    ppool.admin.host_live(dead.uuid, False)
    before = state(ppool)
    with client(ppool) as c:
        with pytest.raises(errors.HostOffline) as e:
            c.connect(file_volume(dead), dead.uuid)
        assert e.value.host == dead.uuid and "offline" in e.value.message
        # migrate's first step, prepare_host, runs on the destination
        with pytest.raises(errors.HostOffline) as e:
            c.migrate(vm_uuid, dead.uuid)
        assert e.value.host == dead.uuid
    assert xapi.VM.get_resident_on(vm_ref) == host.ref
    after = state(ppool)
    for cls in ("SR", "PBD", "VBD", "VDI", "secret"):
        assert after.get(cls) == before.get(cls), cls


def test_a_detach_keeps_a_pool_wide_sr_plugged_on_an_offline_host(ppool):
    """xapi forwards no PBD.unplug to a host that is not live and leaves its PBD plugged: the
    SR cannot be forgotten; the detach succeeds and says so, and a later release forgets it."""
    from conftest import plugin
    from drivercheck import placed, xensm_volume

    xapi = ppool.session().xenapi
    sr_uuid, info = xensm_volume(ppool, "iso", ["location"], location="//files/isos")
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(
        xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, placement="pool"
    )
    sr = xapi.SR.get_by_uuid(sr_uuid)
    hosts = [xapi.PBD.get_host(p) for p in xapi.SR.get_PBDs(sr)]
    dead = [h for h in ppool.sim.hosts if h.ref != host.ref and h.ref in hosts][-1]
    ppool.admin.host_live(dead.uuid, False)
    gone = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert gone["detached"][0]["vbd_uuid"] == out["vbd_uuid"]
    assert "SR kept: host %s is offline" % dead.uuid in gone["note"]
    assert xapi.SR.get_uuid(sr) == sr_uuid
    ppool.admin.host_live(dead.uuid, True)
    out = plugin(
        xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, placement="pool"
    )
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    after = state(ppool)
    for cls in ("SR", "PBD", "VBD", "VDI", "secret"):
        assert after.get(cls) == before.get(cls), cls
