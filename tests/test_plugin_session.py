"""The plugin works on its own local session (issue 10): the caller's session only
authenticates the call, and the plugin's session is logged out when the call ends."""

import os
import uuid
import xmlrpc.client

import pytest

from conftest import PluginError, plugin, state
from racewindow import in_background, wait_for_call
from test_plugin_iscsi import placed


def file_volume(host):
    """A 1 MiB raw file volume on host (a simulated host)."""
    return file_volume_in([host.root])


def file_volume_in(roots, volume_type="file"):
    """A 1 MiB raw file volume, the same file under each of the host roots given (the SR is
    plugged on the VM's host and the master); its connection_info."""
    vdi = str(uuid.uuid4())
    for root in roots:
        d = os.path.join(root, "var/lib/xenvol/volumes")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
            fh.truncate(1 << 20)
    return {
        "driver_volume_type": volume_type,
        "data": {"path": "/var/lib/xenvol/volumes", "vdi_uuid": vdi},
    }


def attach_while_the_client_logs_out(pool, host, vm_uuid, info):
    """attach_volume from a client whose session is logged out while the plugin sits in
    VBD.plug (2 s of injected latency); returns the plugin's result or PluginError."""
    client = pool.session()
    pool.admin.set_latency("VBD.plug", 2.0)
    t, out = in_background(
        lambda: plugin(client.xenapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    )
    wait_for_call(pool, "VBD.plug", t, out)
    # what a client does when it gives up: log its session out
    xmlrpc.client.ServerProxy(pool.url).session.logout(client._session)
    t.join(60)
    assert not t.is_alive()
    pool.admin.set_latency("VBD.plug", 0.0)
    assert client._session not in pool.sim.sessions
    return out["r"]


@pytest.mark.slow
def test_attach_completes_after_the_client_logged_out(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    result = attach_while_the_client_logs_out(ppool, host, vm_uuid, file_volume(host))
    assert not isinstance(result, PluginError), result.details
    vbd = xapi.VBD.get_by_uuid(result["vbd_uuid"])
    assert xapi.VBD.get_currently_attached(vbd) is True
    plugin(xapi, host, "detach_volume", vbd_uuid=result["vbd_uuid"])


@pytest.mark.slow
def test_rollback_runs_after_the_client_logged_out(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    ppool.admin.inject_fault("VBD.plug", ["INTERNAL_ERROR", "injected"], {"caller": "plugin"})
    result = attach_while_the_client_logs_out(ppool, host, vm_uuid, info)
    assert isinstance(result, PluginError) and "rollback_incomplete" not in result.details
    assert state(ppool) == before


@pytest.mark.slow
def test_the_plugins_session_ends_with_the_call(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    sessions = set(ppool.sim.sessions)
    ppool.admin.clear()
    out = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    try:
        plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid="nope")
    except PluginError:
        pass
    assert set(ppool.sim.sessions) == sessions
    counts = ppool.admin.counts()
    assert counts["session.login_with_password"] == {"plugin": 3}
    assert counts["session.logout"] == {"plugin": 3}
