"""No per-target serialisation (issue 12): the calls of one SR lock it only for its set-up, share
its scans, and survive a release on another host that forgets the SR in their window (between
the set-up and their VBD), through the real path with the simulator's latency hooks."""

import pytest

from conftest import PluginError, plugin, state
from racewindow import in_background, wait_for_call
from test_plugin_iscsi import ci, placed

# How long the window stays open: longer than a whole detach takes on a loaded machine (four
# workers on two shared cores), as the detach must release the SR within it. Once it has, the
# latencies go, so the rest of the test (the retry, the clean-up) does not wait.
WINDOW = 8.0


def _window(ppool, peers, fn, wait_in, slowed=None):
    """vm-3 (another host) holds LUN 2 of a target; an attach (or connect) of LUN 1 on vm-1's
    host finds the SR up and waits in `wait_in`, its step before the VBD (or claim) exists;
    meanwhile the detach of LUN 2 releases the SR (its `slowed` call slowed down to end after
    the window)."""
    xapi = ppool.session().xenapi
    before = state(ppool)
    iqn = peers.new_target(luns=(1, 2))
    _ref1, uuid1, host1 = placed(ppool, xapi, "vm-1")
    _ref3, uuid3, host3 = placed(ppool, xapi, "vm-3")
    assert host1.ref != host3.ref
    other = plugin(xapi, host3, "attach_volume", connection_info=ci(peers, iqn, 2), vm_uuid=uuid3)
    ppool.admin.clear()
    ppool.admin.set_latency(wait_in, WINDOW, "plugin")
    if slowed:
        ppool.admin.set_latency(slowed, WINDOW + 2, "plugin")
    args = {"vm_uuid": uuid1} if fn == "attach_volume" else {}
    t, out = in_background(
        lambda: plugin(ppool.session().xenapi, host1, fn, connection_info=ci(peers, iqn, 1), **args)
    )
    wait_for_call(ppool, wait_in, t, out)
    released = plugin(xapi, host3, "detach_volume", vbd_uuid=other["vbd_uuid"])
    assert released["note"] == "SR forgotten"
    for method in (wait_in, slowed or wait_in):
        ppool.admin.set_latency(method, 0, "plugin")
    t.join(120)
    got = out["r"]
    assert not isinstance(got, PluginError), got
    # The call went through again from the start: the SR is back, up here, with the volume.
    assert ppool.admin.counts()["SR.introduce"]["plugin"] == 1
    ppool.admin.clear()
    sr = xapi.SR.get_by_uuid(got["sr_uuid"])
    pbds = dict(
        (xapi.PBD.get_host(p), xapi.PBD.get_currently_attached(p)) for p in xapi.SR.get_PBDs(sr)
    )
    assert pbds.get(host1.ref) is True
    if fn == "attach_volume":
        vbd = xapi.VBD.get_by_uuid(got["vbd_uuid"])
        assert xapi.VBD.get_currently_attached(vbd)
        vbds = [
            v
            for v in xapi.VM.get_VBDs(xapi.VM.get_by_uuid(uuid1))
            if xapi.VBD.get_other_config(v).get("xenvol") == "true"
        ]
        assert vbds == [vbd]  # the first try's VBD was rolled back
        plugin(xapi, host1, "detach_volume", vbd_uuid=got["vbd_uuid"])
    else:
        vdi = xapi.VDI.get_by_uuid(got["vdi_uuid"])
        assert "xenvol-connected-" + host1.uuid in xapi.VDI.get_other_config(vdi)
        plugin(xapi, host1, "disconnect_volume", sr_uuid=got["sr_uuid"], vdi_uuid=got["vdi_uuid"])
    assert state(ppool) == before


@pytest.mark.parametrize(
    "fn,wait_in", [("attach_volume", "VBD.create"), ("connect_volume", "VDI.get_other_config")]
)
def test_a_release_forgets_the_sr_before_the_vbd_or_claim_exists(ppool, peers, fn, wait_in):
    """The SR is forgotten while the call waits to make its VBD (or claim): that step meets a
    vanished VDI, and the call is rolled back and tried again."""
    _window(ppool, peers, fn, wait_in)


@pytest.mark.parametrize(
    "fn,wait_in", [("attach_volume", "VBD.create"), ("connect_volume", "VDI.get_other_config")]
)
def test_a_release_that_missed_the_vbd_or_claim_is_awaited_then_retried(ppool, peers, fn, wait_in):
    """The release checked the SR's users before the call made its VBD (or claim) and forgets
    the SR after (its SR.forget slowed): the call's check after its VBD waits for the
    release's lease to go, finds the SR gone, rolls back (its VBD or claim too) and tries
    again."""
    _window(ppool, peers, fn, wait_in, slowed="SR.forget")


def test_connects_of_one_target_share_one_scan(ppool, peers):
    """Concurrent connects of LUNs of one target on one host: one introduces the SR and plugs
    it, the others wait on its dom0 lock only for that, and one scan serves them all."""
    xapi = ppool.session().xenapi
    before = state(ppool)
    luns = list(range(1, 7))
    iqn = peers.new_target(luns=luns, size_mb=1)
    host = ppool.host(0)
    ppool.admin.set_latency("SR.scan", 1.0, "plugin")
    threads = [
        in_background(
            lambda lun=lun: plugin(
                ppool.session().xenapi, host, "connect_volume", connection_info=ci(peers, iqn, lun)
            )
        )
        for lun in luns
    ]
    for t, _out in threads:
        t.join(120)
    results = [out["r"] for _t, out in threads]
    assert not [r for r in results if isinstance(r, PluginError)], results
    counts = ppool.admin.counts()
    assert counts["SR.scan"]["plugin"] <= 2, counts["SR.scan"]
    assert counts["SR.introduce"]["plugin"] == 1
    ppool.admin.clear()
    assert len(set(r["vdi_uuid"] for r in results)) == len(luns)
    for r in results:
        plugin(xapi, host, "disconnect_volume", sr_uuid=r["sr_uuid"], vdi_uuid=r["vdi_uuid"])
    assert state(ppool) == before


def test_a_call_meets_an_sr_another_call_has_introduced_but_not_yet_marked(ppool, peers):
    """SR.introduce and xenvol's ownership mark are two XAPI calls: a second attach that reads
    the SR between them (on another host, no lock shared) waits for the mark instead of
    refusing the SR as foreign (XENVOL_POLICY_REFUSED)."""
    from test_plugin_drivers import nfs_volume

    xapi = ppool.session().xenapi
    before = state(ppool)
    sr_uuid, vdis = nfs_volume(peers, n=2)
    hosts_vms = [placed(ppool, xapi, name) for name in ("vm-1", "vm-3")]
    assert hosts_vms[0][2].ref != hosts_vms[1][2].ref

    def info(vdi):
        return {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv",
                "sr_uuid": sr_uuid,
                "vdi_uuid": vdi,
            },
        }

    ppool.admin.clear()
    ppool.admin.set_latency("SR.add_to_other_config", 1.5, "plugin")  # the mark, then the lease
    _r, uuid1, host1 = hosts_vms[0]
    t, out = in_background(
        lambda: plugin(
            ppool.session().xenapi,
            host1,
            "attach_volume",
            connection_info=info(vdis[0]),
            vm_uuid=uuid1,
        )
    )
    wait_for_call(ppool, "SR.introduce", t, out)
    for _ in range(500):  # the introduce done; its mark is slowed down
        if xapi.SR.get_all_records_where('field "uuid" = "%s"' % sr_uuid):
            break
        t.join(0.01)
    _r, uuid3, host3 = hosts_vms[1]
    second = plugin(xapi, host3, "attach_volume", connection_info=info(vdis[1]), vm_uuid=uuid3)
    t.join(120)
    assert not isinstance(out["r"], PluginError), out["r"]
    assert ppool.admin.counts()["SR.introduce"]["plugin"] == 1
    ppool.admin.set_latency("SR.add_to_other_config", 0, "plugin")
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_other_config(sr).get("xenvol-introduced") == "true"
    assert not [k for k in xapi.SR.get_other_config(sr) if k.startswith("xenvol-pbd-")]
    for got, host in ((out["r"], host1), (second, host3)):
        plugin(xapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"])
    assert state(ppool) == before
