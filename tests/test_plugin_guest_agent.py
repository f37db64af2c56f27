"""A hot-plug into an HVM guest that has just started (issue 20 §3): its guest metrics appear
only when its agent reports, seconds to minutes later on a host (xapi_guest_agent.ml), and
until then xapi refuses the plug (VM_MISSING_PV_DRIVERS); the plugin leaves the disk for the
VM's next start, which attaches it."""

from conftest import plugin, state
from test_plugin_hvm import file_volume, hvm_pool  # noqa: F401 (fixture)
from test_plugin_iscsi import placed

NULL = "OpaqueRef:NULL"


def test_a_guest_whose_agent_has_not_reported_gets_the_disk_at_its_next_start(hvm_pool):  # noqa: F811
    xapi = hvm_pool.session().xenapi
    ref, vm_uuid, host = placed(hvm_pool, xapi, "vm-5")  # HVM with PV drivers
    info = file_volume(host)
    before = state(hvm_pool)
    hvm_pool.admin.set_guest_agent_delay(3600)  # the agent does not report during the test
    xapi.VM.hard_shutdown(ref)
    xapi.VM.start_on(ref, host.ref, False, False)
    assert xapi.VM.get_guest_metrics(ref) == NULL
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert not out["plugged"] and "next start" in out["note"]
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    assert not xapi.VBD.get_currently_attached(vbd)
    # the next start attaches it; this time the agent reports at once
    hvm_pool.admin.set_guest_agent_delay(0)
    xapi.VM.hard_shutdown(ref)
    xapi.VM.start_on(ref, host.ref, False, False)
    assert xapi.VBD.get_currently_attached(vbd) and xapi.VBD.get_device(vbd) == out["device"]
    assert xapi.VM.get_guest_metrics(ref) != NULL
    # with the agent's report in, a hot-plug goes in at once
    second = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    assert second["plugged"] and "note" not in second
    for a in (second, out):
        plugin(xapi, host, "detach_volume", vbd_uuid=a["vbd_uuid"])
    after = state(hvm_pool)
    for cls in ("SR", "PBD", "VBD", "VDI"):
        assert after.get(cls) == before.get(cls), cls
