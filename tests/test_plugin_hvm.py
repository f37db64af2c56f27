"""attach_volume on HVM guests, through the real plugin path: the seeded vm-5 is HVM with PV
drivers, vm-6 HVM without (both running on host 2)."""

import os
import uuid

import pytest

from conftest import PluginError, plugin, plugin_pool, state
from test_plugin_iscsi import placed


@pytest.fixture
def hvm_pool():
    p = plugin_pool(vms=6)
    yield p
    p.close()


def file_volume(host):
    d = os.path.join(host.root, "var/lib/xenvol/volumes")
    os.makedirs(d, exist_ok=True)
    vdi = str(uuid.uuid4())
    with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
        fh.truncate(1 << 20)
    return {
        "driver_volume_type": "file",
        "data": {"path": "/var/lib/xenvol/volumes", "vdi_uuid": vdi},
    }


@pytest.mark.slow
def test_read_only_disk_on_an_hvm_guest_is_refused(hvm_pool):
    xapi = hvm_pool.session().xenapi
    ref, vm_uuid, host = placed(hvm_pool, xapi, "vm-5")
    info = file_volume(host)
    before = state(hvm_pool)
    for hotplug in ("true", "false"):
        with pytest.raises(PluginError) as e:
            plugin(
                xapi,
                host,
                "attach_volume",
                connection_info=info,
                vm_uuid=vm_uuid,
                mode="ro",
                hotplug=hotplug,
            )
        assert e.value.code == "XENVOL_INVALID_ARGUMENT" and e.value.details["field"] == "mode"
        assert "HVM" in e.value.message
        assert state(hvm_pool) == before
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert out["plugged"] and out["mode"] == "rw" and "note" not in out
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(hvm_pool) == before


@pytest.mark.slow
def test_hotplug_into_an_hvm_guest_without_drivers_waits_for_the_next_start(hvm_pool):
    xapi = hvm_pool.session().xenapi
    ref, vm_uuid, host = placed(hvm_pool, xapi, "vm-6")
    out = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    assert not out["plugged"] and "next start" in out["note"]
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    assert not xapi.VBD.get_currently_attached(vbd)
    xapi.VM.hard_shutdown(ref)
    xapi.VM.start_on(ref, host.ref, False, False)
    assert xapi.VBD.get_currently_attached(vbd) and xapi.VBD.get_device(vbd) == out["device"]
    xapi.VM.hard_shutdown(ref)
    [gone] = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])["detached"]
    assert gone["vbd_uuid"] == out["vbd_uuid"]
