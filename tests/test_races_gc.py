"""gc, leases and clocks never take a live attachment away (issue 19 §1, §2, §5, §6): each race
held open by the simulator's per-caller latency, through the real path (client -> simulator ->
plugin exec'd under dom0's Python), asserting on the pool's state: an attachment that answered
success is still there and usable, and gc reports nothing it did not do."""

import json
import os
import time
import types

import pytest

import xenvol
from conftest import FAST_SETTINGS, PluginError, plugin, state
from killcheck import journals
from racewindow import race
from test_concurrency import _window
from test_plugin_drivers import nfs_volume
from test_plugin_iscsi import ci, placed
from test_plugin_session import file_volume
from test_sim_vm_vbd import vm_rec

CHAP = ("xenvol-user", "Chap-Secret-0123")


def settings(ppool, **extra):
    for h in ppool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(dict(FAST_SETTINGS, **extra), fh)


def new_vm(xapi, name, host):
    """A halted VM with no disk that starts on `host` (its affinity), as nova makes one."""
    return xapi.VM.create(vm_rec(name, affinity=host.ref))


def volume(ppool, kind, host, n=1):
    """n connection_infos of volumes of one SR, usable from `host`."""
    if kind == "file":
        return [file_volume(host) for _ in range(n)]
    if kind == "iscsi":
        iqn = ppool.peers.new_target(luns=range(1, n + 1))
        return [ci(ppool.peers, iqn, lun) for lun in range(1, n + 1)]
    sr_uuid, vdis = nfs_volume(ppool.peers, n=n)
    return [
        {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv",
                "sr_uuid": sr_uuid,
                "vdi_uuid": v,
            },
        }
        for v in vdis
    ]


def unused_sr(ppool, xapi, info, host):
    """The SR of `info` left up with nothing using it (its VM destroyed with the volume
    attached, as gc finds after a kill -9 of both sides); returns its uuid."""
    vm = new_vm(xapi, "doomed", host)
    got = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=xapi.VM.get_uuid(vm))
    xapi.VM.destroy(vm)
    return got["sr_uuid"]


def gc(xapi, host, apply=True, pool=True):
    return plugin(
        xapi, host, "gc", apply="true" if apply else "false", pool="true" if pool else "false"
    )


def about(result, sr_uuid):
    return [i for i in result["items"] if i["id"] == sr_uuid]


def usable(ppool, xapi, vbd_uuid, host):
    """The attachment is whole: its VBD names a VDI that exists on an SR plugged on `host`,
    and its halted VM starts there."""
    vbd = xapi.VBD.get_by_uuid(vbd_uuid)
    vdi = xapi.VBD.get_VDI(vbd)
    sr = xapi.VDI.get_SR(vdi)
    pbds = [p for p in xapi.SR.get_PBDs(sr) if xapi.PBD.get_host(p) == host.ref]
    assert pbds and xapi.PBD.get_currently_attached(pbds[0])
    vm = xapi.VBD.get_VM(vbd)
    xapi.VM.start_on(vm, host.ref, False, False)
    xapi.VM.hard_shutdown(vm)


@pytest.fixture(params=["file", "nfs", "iscsi"])
def kind(request, ppool):
    if request.param != "file":
        ppool.peers = request.getfixturevalue("peers")
    return request.param


# ---------------------------------------------------------------------- §1 gc's own lease
def test_an_attach_meeting_gc_forgetting_its_sr_starts_again(ppool, kind):
    """gc --apply (on the master) has checked that the SR is unused and unplugs it (slowed);
    an attach on a member finds the SR up, makes its VBD, and meets gc's lease: it is a live
    operation's (gc works under a journal of its own), so the attach waits for it, finds
    the SR forgotten, rolls back and starts again. Nothing that answered success is lost."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    old, new = volume(ppool, kind, host, n=2)
    sr_uuid = unused_sr(ppool, xapi, old, host)
    vm = new_vm(xapi, "spawned", host)
    swept, got = race(
        ppool,
        {"PBD.unplug": 3.0},
        "PBD.unplug",
        lambda: gc(ppool.session().xenapi, ppool.host(0)),
        lambda: plugin(
            xapi, host, "attach_volume", connection_info=new, vm_uuid=xapi.VM.get_uuid(vm)
        ),
    )
    assert not isinstance(swept, PluginError), swept
    assert [i["done"] for i in about(swept, sr_uuid)] == [True]
    # The attach met the race (its first VBD rolled back) and set the SR up again.
    assert ppool.admin.counts()["VBD.create"]["plugin"] == 2
    ppool.admin.clear()
    assert got["sr_uuid"] == sr_uuid
    usable(ppool, xapi, got["vbd_uuid"], host)
    assert gc(xapi, ppool.host(0), apply=False)["items"] == []
    plugin(xapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"])
    xapi.VM.destroy(vm)
    assert state(ppool) == before
    assert journals(ppool.host(0)) == [] and journals(host) == []


def test_two_gc_runs_release_an_sr_once_and_say_so(ppool):
    """A second gc --apply (on a member) meets the first one's lease: a live operation's
    (the master's recover says so), so it leaves that SR alone instead of breaking the lease
    as a dead operation's and releasing the SR a second time."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    sr_uuid = unused_sr(ppool, xapi, file_volume(host), host)
    first, second = race(
        ppool,
        {"PBD.unplug": 3.0},
        "PBD.unplug",
        lambda: gc(ppool.session().xenapi, ppool.host(0)),
        lambda: gc(xapi, ppool.host(2)),
    )
    assert not isinstance(first, PluginError), first
    assert [i["done"] for i in about(first, sr_uuid)] == [True]
    assert [i for i in about(second, sr_uuid) if i.get("done")] == []
    assert [i for i in second["items"] if i["kind"] == "lease"] == []
    assert ppool.admin.counts()["SR.forget"]["plugin"] == 1
    ppool.admin.clear()
    assert state(ppool) == before


def test_gc_leaves_an_sr_a_detach_is_releasing(ppool):
    """A detach's release holds the SR's lease (its PBD.unplug slowed) when gc --apply runs
    on the master: gc asks the detach's host, hears it is alive, and reports nothing about
    that SR; the detach forgets it."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    vm = new_vm(xapi, "leaving", host)
    got = plugin(
        xapi,
        host,
        "attach_volume",
        connection_info=file_volume(host),
        vm_uuid=xapi.VM.get_uuid(vm),
    )
    released, swept = race(
        ppool,
        {"PBD.unplug": 3.0},
        "PBD.unplug",
        lambda: plugin(ppool.session().xenapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"]),
        lambda: gc(xapi, ppool.host(0)),
    )
    assert not isinstance(released, PluginError), released
    assert released["note"] == "SR forgotten"
    assert about(swept, got["sr_uuid"]) == []
    assert ppool.admin.counts()["SR.forget"]["plugin"] == 1
    ppool.admin.clear()
    xapi.VM.destroy(vm)
    assert state(ppool) == before


def test_gc_reports_an_sr_that_came_into_use_as_left_not_removed(ppool, monkeypatch, capsys):
    """gc read the SR unused, then an attach made its VBD before gc held the lease (gc's
    lease taken slowly): under the lease gc finds a user, keeps the SR, and says so (`xenvol
    gc --apply`: removed nothing, the SR left, in use). The attachment stays."""
    from xenvol import cli

    monkeypatch.setenv("XENVOL_PASSWORD", ppool.info["password"])
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    old, new = file_volume(host), file_volume(host)
    sr_uuid = unused_sr(ppool, xapi, old, host)
    vm = new_vm(xapi, "spawned", host)
    status, got = race(
        ppool,
        {"SR.add_to_other_config": 3.0},
        "SR.add_to_other_config",
        lambda: cli.main(["--url", ppool.url, "gc", "--apply"]),
        lambda: plugin(
            xapi, host, "attach_volume", connection_info=new, vm_uuid=xapi.VM.get_uuid(vm)
        ),
    )
    assert status == 0
    text = capsys.readouterr().out
    assert text.startswith("removed nothing\n"), text
    assert "left: sr %s: in use now by 1 volume(s)" % sr_uuid in text
    ppool.admin.clear()
    usable(ppool, xapi, got["vbd_uuid"], host)
    plugin(xapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"])
    xapi.VM.destroy(vm)
    assert gc(xapi, ppool.host(0), apply=False)["items"] == []
    assert state(ppool) == before


# ---------------------------------------------------------------------- §2 a VM made meanwhile
def test_gc_keeps_the_volume_of_a_vm_made_while_it_runs(ppool):
    """Nova's spawn (make the VM, then attach) while gc --apply reads the pool (its read of
    the VBDs slowed): gc never takes the new VM's VBD for one whose VM is gone, nor its SR
    for an unused one."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)

    def spawn():
        vm = new_vm(xapi, "spawned", host)
        return vm, plugin(
            xapi,
            host,
            "attach_volume",
            connection_info=file_volume(host),
            vm_uuid=xapi.VM.get_uuid(vm),
        )

    swept, (vm, got) = race(
        ppool,
        {"VBD.get_all_records": 3.0},
        "VBD.get_all_records",
        lambda: gc(ppool.session().xenapi, ppool.host(0)),
        spawn,
    )
    assert not isinstance(swept, PluginError), swept
    assert swept["items"] == []
    ppool.admin.clear()
    usable(ppool, xapi, got["vbd_uuid"], host)
    plugin(xapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"])
    xapi.VM.destroy(vm)
    assert state(ppool) == before


# ---------------------------------------------------------------------- §5 clocks
def test_a_member_whose_clock_runs_ahead_never_breaks_a_live_lease(ppool, peers):
    """lease_stale_after 0 stands for a member whose clock runs ahead of the lease holder's
    by more than that: its attach meets the lease of another host's detach releasing the SR
    (its SR.forget slowed). The operation is alive, so the lease is waited for, never broken
    by its age: the attach finds the SR gone and starts again (test_concurrency._window's
    checks: the SR introduced again, up on the attach's host, the volume attached)."""
    settings(ppool, lease_stale_after=0)
    _window(ppool, peers, "attach_volume", "VBD.create", slowed="SR.forget")


def test_a_client_clock_behind_never_expires_a_secret_in_flight(ppool, peers, monkeypatch):
    """A client an hour behind dom0 tags its CHAP secret; gc --apply runs while the attach
    waits before it reads the secret. gc measures a client secret's life by its own clock,
    from when it first saw it, so the secret stays and the attach succeeds."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = ci(peers, iqn, chap=CHAP)
    before = state(ppool)
    real = time.time
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as late, xenvol.Client(
        ppool.url, "root", ppool.info["password"]
    ) as operator:
        late.detach(attachment=late.attach(info, "vm-1"))  # the version check, once
        monkeypatch.setattr(
            xenvol.client,
            "time",
            types.SimpleNamespace(time=lambda: real() - 3600, monotonic=time.monotonic),
        )
        vm_uuid = placed(ppool, late.x, "vm-1")[1]
        att, swept = race(
            ppool,
            {"VM.get_all_records_where": 3.0},
            "VM.get_all_records_where",
            lambda: late.attach(info, vm_uuid),
            lambda: operator.gc(dry_run=False),
        )
        assert isinstance(att, xenvol.Attachment), att
        assert [i for i in swept if i["kind"] == "secret"] == []
        ppool.admin.clear()
        late.detach(attachment=att)
        assert operator.gc() == []
    assert state(ppool) == before


def test_a_client_secret_expires_by_gcs_own_clock(ppool):
    """A client secret nobody consumed lives its xenvol-ttl from when gc first saw it, as
    that host's clock since its boot measures: the first gc --apply stamps it and keeps it,
    a later one after the TTL destroys it; a stamp of another host (or another boot) is
    not compared with this clock but replaced."""
    xapi = ppool.session().xenapi
    master = ppool.host(0)
    before = state(ppool)
    tags = {"xenvol": "client", "xenvol-op": "op-gone", "xenvol-ttl": "30"}
    ref = xapi.secret.create({"value": "pw", "other_config": tags})
    xapi.secret.add_to_other_config(ref, "xenvol-seen", "%s some-boot 0" % ppool.host(1).uuid)
    # Clocks that disagree (an expiry a day past, as an older client wrote) change nothing.
    xapi.secret.add_to_other_config(ref, "xenvol-expires", "1")
    assert gc(xapi, master)["items"] == []
    seen = xapi.secret.get_other_config(ref)["xenvol-seen"]
    where, _, when = seen.rpartition(" ")
    assert where.startswith(master.uuid + " ") and where != master.uuid + " some-boot"
    assert gc(xapi, master, apply=False)["items"] == []
    # Time passes, by the master's clock.
    xapi.secret.remove_from_other_config(ref, "xenvol-seen")
    xapi.secret.add_to_other_config(ref, "xenvol-seen", "%s %.3f" % (where, float(when) - 31))
    (item,) = gc(xapi, master, apply=False)["items"]
    assert item["kind"] == "secret" and "done" not in item
    (item,) = gc(xapi, master)["items"]
    assert item["kind"] == "secret" and item["done"] is True
    assert state(ppool) == before


# ---------------------------------------------------------------------- §6
def test_release_host_keeps_the_pbd_a_halted_vm_with_affinity_needs(ppool, peers):
    """A halted VM whose home is a member (its affinity): release_host there keeps that
    host's PBD of the VM's SR, and the VM starts there."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    iqn = peers.new_target(luns=(1,))
    vm = new_vm(xapi, "halted", host)
    vm_uuid = xapi.VM.get_uuid(vm)
    got = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    out = plugin(xapi, host, "release_host", vm_uuid=vm_uuid)
    assert out["released"] == [
        {"sr_uuid": got["sr_uuid"], "note": "kept: a halted VM that starts on this host uses it"}
    ]
    usable(ppool, xapi, got["vbd_uuid"], host)
    plugin(xapi, host, "detach_volume", vbd_uuid=got["vbd_uuid"])
    xapi.VM.destroy(vm)
    assert state(ppool) == before


def test_an_attach_meeting_unplugged_pbds_of_a_release_starts_again(ppool, peers):
    """A release on another host has unplugged the SR's PBDs and forgets it (slowed) while
    an attach that found the SR up scans it: the scan fails SR_HAS_NO_PBDS (xapi's SM call
    needs the master's PBD plugged), and the attach rolls back and starts again instead of
    failing."""
    xapi = ppool.session().xenapi
    before = state(ppool)
    iqn = peers.new_target(luns=(1, 2))
    _ref1, uuid1, host1 = placed(ppool, xapi, "vm-1")
    _ref3, uuid3, host3 = placed(ppool, xapi, "vm-3")
    other = plugin(xapi, host3, "attach_volume", connection_info=ci(peers, iqn, 2), vm_uuid=uuid3)
    got, released = race(
        ppool,
        {"SR.scan": 3.0, "SR.forget": 3.0},
        "SR.scan",
        lambda: plugin(
            ppool.session().xenapi,
            host1,
            "attach_volume",
            connection_info=ci(peers, iqn, 1),
            vm_uuid=uuid1,
        ),
        lambda: plugin(xapi, host3, "detach_volume", vbd_uuid=other["vbd_uuid"]),
    )
    assert released["note"] == "SR forgotten"
    assert not isinstance(got, PluginError), got
    assert ppool.admin.counts()["SR.introduce"]["plugin"] == 1
    ppool.admin.clear()
    vbd = xapi.VBD.get_by_uuid(got["vbd_uuid"])
    assert xapi.VBD.get_currently_attached(vbd)
    plugin(xapi, host1, "detach_volume", vbd_uuid=got["vbd_uuid"])
    assert state(ppool) == before


def test_release_host_meeting_an_attach_in_its_window_never_loses_it(ppool, peers):
    """release_host of a VM that left a member drops that member's PBD of the VM's SR (its
    PBD.destroy slowed) while an attach there for a halted VM that starts there made its VBD
    after release_host checked the users: release_host works under the SR's lease, so the
    attach waits for it, finds the PBD gone, and starts again; the VM starts there."""
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    before = state(ppool)
    iqn = peers.new_target(luns=(1, 2))
    left = new_vm(xapi, "left", host)
    left_uuid = xapi.VM.get_uuid(left)
    gone = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn, 1), vm_uuid=left_uuid)
    xapi.VM.set_affinity(left, ppool.host(2).ref)  # it moved away
    vm = new_vm(xapi, "spawned", host)
    got, released = race(
        ppool,
        {"VBD.create": 1.5, "PBD.destroy": 3.0},
        "VBD.create",
        lambda: plugin(
            ppool.session().xenapi,
            host,
            "attach_volume",
            connection_info=ci(peers, iqn, 2),
            vm_uuid=xapi.VM.get_uuid(vm),
        ),
        lambda: plugin(xapi, host, "release_host", vm_uuid=left_uuid),
    )
    assert [r["note"] for r in released["released"]] == ["PBD removed"]
    assert not isinstance(got, PluginError), got
    assert ppool.admin.counts()["VBD.create"]["plugin"] == 2
    ppool.admin.clear()
    usable(ppool, xapi, got["vbd_uuid"], host)
    for done in (got, gone):
        plugin(xapi, host, "detach_volume", vbd_uuid=done["vbd_uuid"])
    for v in (vm, left):
        xapi.VM.destroy(v)
    assert state(ppool) == before
