"""Issue 10, the gaps: kill -9 of the plugin at every step of connect_volume, and before the call
runs for detach/disconnect; the kill matrix over iSCSI with CHAP (real tgt) and NFS (real
ganesha); a dead lease held by another host (not live, or live with its operation dead).
Defaults only (lock_timeout 120 s): a dead holder waited out would fail BUSY, never slowly pass."""

import pytest

from conftest import PluginError, plugin, state
from killcheck import default_settings, journals, killed_then_retried, release_each_kill
from test_plugin_drivers import nfs_volume
from test_plugin_iscsi import ci, placed
from test_plugin_session import file_volume

pytestmark = pytest.mark.slow  # kill matrices: a plugin run per XAPI call

CHAP = ("kill-user", "Kill-Chap-Secret-77")


def secret_values(pool, xapi):
    return [xapi.secret.get_value(xapi.secret.get_by_uuid(u)) for u in state(pool)["secret"]]


def nothing_left(pool, xapi, host, before, n):
    assert state(pool) == before, n
    assert journals(host) == [], n
    assert CHAP[1] not in secret_values(pool, xapi), n


def released_each_kill(pool, xapi, host, fn, when, info, vm_uuid, before):
    """killcheck.release_each_kill, with nothing left after each retry (no CHAP secret)."""
    return release_each_kill(
        pool,
        xapi,
        host,
        fn,
        when,
        info,
        vm_uuid,
        lambda n: nothing_left(pool, xapi, host, before, n),
    )


# A kill before the nth call runs, or after it ran (its change made, its answer lost).
KILLS = pytest.mark.parametrize("when", ["before", "after"])


# ---------------------------------------------------------------------- connect_volume
@KILLS
def test_connect_killed_at_every_step_then_again(ppool, when):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    host = ppool.host(0)
    info = file_volume(host)
    before = state(ppool)
    for n, out in killed_then_retried(
        ppool, xapi, host, "connect_volume", when, connection_info=info
    ):
        assert out["vdi_uuid"] and out["host_uuid"] == host.uuid, n
        plugin(xapi, host, "disconnect_volume", connection_info=info)
        nothing_left(ppool, xapi, host, before, n)


@pytest.mark.parametrize("fn", ["detach_volume", "disconnect_volume"])
def test_release_killed_before_each_call_then_again(ppool, fn):
    """The kill before the nth call runs (test_lifecycle has it after the call ran)."""
    default_settings(ppool)
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    released_each_kill(ppool, xapi, host, fn, "before", info, vm_uuid, before)


# ---------------------------------------------------------------------- iSCSI with CHAP, NFS
def chap_volume(pool, peers):
    """vm-1 and a LUN of a new CHAP target: (xapi, vm uuid, its host, connection_info, the
    pool's state), with the operator's default settings."""
    default_settings(pool)
    xapi = pool.session().xenapi
    _ref, vm_uuid, host = placed(pool, xapi, "vm-1")
    info = ci(peers, peers.new_target(luns=(1,), chap=CHAP), chap=CHAP)
    return xapi, vm_uuid, host, info, state(pool)


@KILLS
def test_iscsi_chap_attach_killed_at_every_step_then_again(ppool, peers, when):
    xapi, vm_uuid, host, info, before = chap_volume(ppool, peers)
    for n, out in killed_then_retried(
        ppool, xapi, host, "attach_volume", when, connection_info=info, vm_uuid=vm_uuid
    ):
        assert out["plugged"] is True, n
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
        nothing_left(ppool, xapi, host, before, n)


@KILLS
@pytest.mark.parametrize("fn", ["detach_volume", "disconnect_volume"])
def test_iscsi_chap_release_killed_at_every_step_then_again(ppool, peers, fn, when):
    xapi, vm_uuid, host, info, before = chap_volume(ppool, peers)
    assert released_each_kill(ppool, xapi, host, fn, when, info, vm_uuid, before) > 5


def test_iscsi_chap_connect_killed_at_every_step_then_again(ppool, peers):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    host = ppool.host(0)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = ci(peers, iqn, chap=CHAP)
    before = state(ppool)
    for n, out in killed_then_retried(
        ppool, xapi, host, "connect_volume", "after", connection_info=info
    ):
        assert out["vdi_uuid"] and out["host_uuid"] == host.uuid, n
        plugin(xapi, host, "disconnect_volume", connection_info=info)
        nothing_left(ppool, xapi, host, before, n)


def nfs_info(peers):
    """A VHD in an SR directory on the real ganesha export."""
    sr_uuid, (vdi,) = nfs_volume(peers)
    return {
        "driver_volume_type": "nfs",
        "data": {"server": "127.0.0.1", "serverpath": "/srv", "sr_uuid": sr_uuid, "vdi_uuid": vdi},
    }


def test_nfs_attach_and_detach_killed_at_every_step_then_again(ppool, peers):
    """Real ganesha: attach killed after each call ran (its change made, not answered),
    detach killed before each call runs (both kinds are run over iSCSI above)."""
    default_settings(ppool)
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = nfs_info(peers)
    before = state(ppool)
    for n, out in killed_then_retried(
        ppool, xapi, host, "attach_volume", "after", connection_info=info, vm_uuid=vm_uuid
    ):
        assert out["plugged"] is True, n
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
        nothing_left(ppool, xapi, host, before, n)
    assert (
        released_each_kill(ppool, xapi, host, "detach_volume", "before", info, vm_uuid, before) > 5
    )


# ---------------------------------------------------------------------- another host's lease
def _leased_by_a_dead_operation(pool, xapi, peers):
    """An attach on host B killed once it holds the SR lease (before its PBD; the target's SR is
    pool-wide, so host A's attach of another LUN meets that lease). Returns (host A, its VM's
    uuid, host B, the connection_info for host A, the SR's ref)."""
    _ref, vm_a, host_a = placed(pool, xapi, "vm-1")
    _ref, vm_b, host_b = placed(pool, xapi, "vm-3")
    assert host_a.uuid != host_b.uuid
    iqn = peers.new_target(luns=(1, 2), chap=CHAP)
    pool.admin.clear()
    pool.admin.kill_plugin("PBD.create", {"host": host_b.uuid})
    with pytest.raises(PluginError):
        plugin(
            xapi,
            host_b,
            "attach_volume",
            connection_info=ci(peers, iqn, 1, chap=CHAP),
            vm_uuid=vm_b,
        )
    pool.admin.clear()
    leased = [
        (ref, rec)
        for ref, rec in xapi.SR.get_all_records().items()
        if "xenvol-lease" in rec["other_config"]
    ]
    assert len(leased) == 1
    sr, rec = leased[0]
    assert rec["other_config"]["xenvol-lease"].startswith(host_b.uuid + "/")
    assert len(journals(host_b)) == 1
    return host_a, vm_a, host_b, ci(peers, iqn, 2, chap=CHAP), sr


def _set_live(pool, host, live):
    # The simulator's host_metrics row, as xapi's heartbeat (db_gc.ml) would set it.
    with pool.sim.db.lock:
        metrics = pool.sim.db.raw("host", host.ref)["metrics"]
        pool.sim.db.raw("host_metrics", metrics)["live"] = live


def test_a_lease_of_a_host_that_is_not_live_is_broken_at_once(ppool, peers):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    before = state(ppool)
    host_a, vm_a, host_b, info, sr = _leased_by_a_dead_operation(ppool, xapi, peers)
    _set_live(ppool, host_b, False)
    # A host that is not live is not asked: were it asked, this fault would make its
    # answer unknown and the attach would wait out lock_timeout and fail BUSY.
    ppool.admin.inject_fault(
        "host.call_plugin", ["INTERNAL_ERROR", "injected"], {"every": True, "caller": "plugin"}
    )
    out = plugin(xapi, host_a, "attach_volume", connection_info=info, vm_uuid=vm_a)
    assert out["plugged"] is True
    ppool.admin.clear()
    plugin(xapi, host_a, "detach_volume", vbd_uuid=out["vbd_uuid"])
    # Host B back: its own dead journal is rolled back by its next call (here gc).
    _set_live(ppool, host_b, True)
    plugin(xapi, host_b, "gc", apply="true")
    assert journals(host_b) == []
    assert state(ppool) == before
    assert CHAP[1] not in secret_values(ppool, xapi)


def test_a_lease_of_a_dead_operation_on_a_live_host_is_recovered_by_that_host(ppool, peers):
    default_settings(ppool)
    xapi = ppool.session().xenapi
    before = state(ppool)
    host_a, vm_a, host_b, info, sr = _leased_by_a_dead_operation(ppool, xapi, peers)
    out = plugin(xapi, host_a, "attach_volume", connection_info=info, vm_uuid=vm_a)
    assert out["plugged"] is True
    # Host B's plugin was asked (`recover`) and rolled its dead operation back.
    assert journals(host_b) == []
    plugin(xapi, host_a, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before
    assert CHAP[1] not in secret_values(ppool, xapi)


# ---------------------------------------------------------------------- a vanished task
def test_a_task_destroyed_before_its_answer_is_read_is_asked_again_by_op_id(ppool):
    """xapi's task GC (db_gc_util.ml timeout_tasks, beyond max_tasks) may destroy a completed
    task before the client reads it: the client asks again with the same op id and gets the
    plugin's saved result, not a second attach nor HANDLE_INVALID."""
    import threading

    import xenvol

    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    destroyed = []
    stop = threading.Event()

    def destroy_completed_plugin_tasks():
        other = ppool.session().xenapi
        while not stop.is_set() and not destroyed:
            for ref, rec in other.task.get_all_records().items():
                if rec["status"] == "success" and "call_plugin" in rec["name_label"]:
                    other.task.destroy(ref)
                    destroyed.append(rec["uuid"])
            stop.wait(0.02)

    # A client that shows progress runs its changing calls as tasks.
    with xenvol.Client(ppool.url, "root", ppool.info["password"], progress=lambda step: None) as c:
        c.check_version(host.ref)
        # The client's reads of its task wait 3 s; the task completes and is destroyed meanwhile.
        ppool.admin.set_latency("task.get_record", 3.0, "client")
        t = threading.Thread(target=destroy_completed_plugin_tasks)
        t.start()
        try:
            att = c.attach(info, vm_uuid)
        finally:
            stop.set()
            t.join()
        ppool.admin.clear()
        assert destroyed and att.plugged
        assert [a.vbd_uuid for a in c.attachments(vm_uuid)] == [att.vbd_uuid]
        c.detach(attachment=att)
    assert state(ppool) == before
