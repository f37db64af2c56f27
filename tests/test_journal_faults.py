"""Truthful cancels and full disks (issue 19 §6): a cancel undoes what was done or says what
stands; a journal or results directory that fills up mid-operation never ends a rollback and
never turns a finished attach into an error (nor into a rollback by the next call). Windows
are held open with the simulator's per-caller latency; a full disk is a small tmpfs mounted
over the host's directory (the tests run as root in a private mount namespace)."""

import contextlib
import errno
import os
import subprocess

import pytest

from conftest import PluginError, plugin
from killcheck import journals
from racewindow import in_background, wait_for_call
from test_opid import results, state, vbds_of
from test_plugin_iscsi import placed
from test_plugin_session import file_volume

PAGE = 4096


def attached(xapi, vm_ref):
    """{vbd uuid: plugged} of the VM's xenvol disks."""
    return dict(
        (u, xapi.VBD.get_currently_attached(xapi.VBD.get_by_uuid(u))) for u in vbds_of(xapi, vm_ref)
    )


# ---------------------------------------------------------------------- cancel
def test_cancel_after_a_detachs_unplug_finishes_the_detach(ppool):
    """Nothing re-plugs the disk: the detach goes on to its end and answers what it did."""
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    out = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    ppool.admin.clear()
    ppool.admin.set_latency("VBD.unplug", 4.0, "plugin")
    t, res = in_background(
        lambda: plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], op_id="op-cd")
    )
    wait_for_call(ppool, "VBD.unplug", t, res)
    other = ppool.session().xenapi
    assert plugin(other, host, "cancel", operation="op-cd")["state"] == "cancelling"
    t.join(60)
    ppool.admin.clear()
    assert not isinstance(res["r"], PluginError), res["r"]
    assert [d["vbd_uuid"] for d in res["r"]["detached"]] == [out["vbd_uuid"]]
    assert vbds_of(xapi, vm_ref) == {} and journals(host) == []
    assert state(ppool) == before


def test_cancel_before_a_detachs_unplug_changes_nothing(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    snap = state(ppool)
    ppool.admin.clear()
    ppool.admin.set_latency("SR.get_record", 4.0, "plugin")  # describing the disk, before
    t, res = in_background(
        lambda: plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"], op_id="op-cb")
    )
    wait_for_call(ppool, "SR.get_record", t, res)
    assert plugin(ppool.session().xenapi, host, "cancel", operation="op-cb")["state"] == (
        "cancelling"
    )
    t.join(60)
    ppool.admin.clear()
    assert isinstance(res["r"], PluginError) and res["r"].code == "XENVOL_CANCELLED"
    assert res["r"].details["rolled_back"] is True
    assert attached(xapi, vm_ref) == {out["vbd_uuid"]: True}
    assert state(ppool) == snap
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])


def test_a_cancel_whose_rollback_fails_says_what_stands(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    ppool.admin.set_latency("VBD.create", 4.0, "plugin")
    ppool.admin.inject_fault("VBD.destroy", ["INTERNAL_ERROR", "disk says no"], {"every": True})
    t, res = in_background(
        lambda: plugin(
            xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-cr"
        )
    )
    wait_for_call(ppool, "VBD.create", t, res)
    plugin(ppool.session().xenapi, host, "cancel", operation="op-cr")
    t.join(60)
    e = res["r"]
    assert isinstance(e, PluginError) and e.code == "XENVOL_CANCELLED"
    assert e.details["rolled_back"] is False and e.details["left"] == ["create VBD"]
    assert "NOT rolled back: create VBD" in e.message
    assert list(vbds_of(xapi, vm_ref))  # what the answer says stands, stands
    ppool.admin.clear()
    assert plugin(xapi, host, "recover")["recovered"] == ["op-cr"]
    # The SR stayed for the VBD that stood; with the VBD gone, gc finds it.
    plugin(xapi, host, "gc", apply="true", pool="true")
    assert state(ppool) == before


# ---------------------------------------------------------------------- full disks
def _mount_reason():
    if os.environ.get("XENVOL_PRIVATE_NETNS") != "1" or os.geteuid() != 0:
        return "mounts need root in the private mount namespace (tools/in-private-netns)"
    return None


@contextlib.contextmanager
def small_fs(path, options="size=256k"):
    """A tmpfs over path (the host's plugin sees it: its /var is an rbind of the host's)."""
    reason = _mount_reason()
    if reason:
        pytest.skip(reason)
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "xenvol-test", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


def fill(d):
    """Fill the file system of d to its last page."""
    fd = os.open(os.path.join(d, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * PAGE)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def fill_after(journal):
    """Fill the journal's file system so that its next line needs a page there is not: the
    journal is first padded to a page boundary with a line that means nothing (done of no
    step), so that no line fits in its last page."""
    pad = (-os.path.getsize(journal)) % PAGE
    if pad < 13:
        pad += PAGE
    with open(journal, "ab") as fh:
        fh.write(b'{"done": 0' + b" " * (pad - 12) + b"}\n")
    assert os.path.getsize(journal) % PAGE == 0
    fill(os.path.dirname(journal))


def ops_dir(host):
    return os.path.join(host.root, "var/lib/xenvol/ops")


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_full_or_read_only_journal_directory_is_refused_before_any_change(ppool, how):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    with small_fs(ops_dir(host), "size=64k" + (",ro" if how == "read-only" else "")) as d:
        if how == "full":
            fill(d)
        with pytest.raises(PluginError) as e:
            plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        assert e.value.code == "XENVOL_INTERNAL_ERROR"
        assert "journal cannot be written" in e.value.message and "nothing was done" in (
            e.value.message
        )
        assert state(ppool) == before
        assert [n for n in os.listdir(d) if n != "filler"] == []


def test_a_journal_full_in_the_middle_never_ends_the_rollback(ppool):
    """The step before VBD.plug cannot be written: no plug; every step before is undone,
    though no `done` line can be written either; nothing is left for a recovery."""
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    with small_fs(ops_dir(host)) as d:
        ppool.admin.set_latency("VBD.create", 4.0, "plugin")
        t, res = in_background(
            lambda: plugin(
                xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-f"
            )
        )
        wait_for_call(ppool, "VBD.create", t, res)
        fill_after(os.path.join(d, "op-f.json"))
        t.join(60)
        assert ppool.admin.counts().get("VBD.plug", {}).get("plugin", 0) == 0
        ppool.admin.clear()
        e = res["r"]
        assert isinstance(e, PluginError) and e.code == "XENVOL_INTERNAL_ERROR", e
        assert "journal cannot be written" in e.message and "plug VBD not done" in e.message
        assert "rollback_incomplete" not in e.details
        assert sorted(os.listdir(d)) == ["filler"]
        assert state(ppool) == before


def test_a_commit_line_that_cannot_be_written_leaves_the_attach_standing(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    with small_fs(ops_dir(host)) as d:
        ppool.admin.set_latency("VBD.plug", 4.0, "plugin")
        t, res = in_background(
            lambda: plugin(
                xapi,
                host,
                "attach_volume",
                connection_info=file_volume(host),
                vm_uuid=vm_uuid,
                op_id="op-c",
            )
        )
        wait_for_call(ppool, "VBD.plug", t, res)
        fill_after(os.path.join(d, "op-c.json"))
        t.join(60)
        ppool.admin.clear()
        out = res["r"]
        assert not isinstance(out, PluginError), out
        assert out["plugged"] is True
        # The journal went with the operation: nothing for the next call to roll back.
        assert sorted(os.listdir(d)) == ["filler"]
        os.unlink(os.path.join(d, "filler"))
        plugin(xapi, host, "recover")
        other = plugin(
            xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid
        )
        assert attached(xapi, vm_ref) == {out["vbd_uuid"]: True, other["vbd_uuid"]: True}
    for vbd in (out["vbd_uuid"], other["vbd_uuid"]):
        plugin(xapi, host, "detach_volume", vbd_uuid=vbd)


def test_a_full_results_directory_leaves_the_attach_standing(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    with small_fs(os.path.join(host.root, "var/lib/xenvol/results"), "size=64k") as d:
        fill(d)
        out = plugin(
            xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-r"
        )
        assert out["plugged"] is True and journals(host) == []
        assert results(host) == ["filler"]
        assert attached(xapi, vm_ref) == {out["vbd_uuid"]: True}
        # No result kept: the retry runs again, and finds the disk attached.
        again = plugin(
            xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid, op_id="op-r"
        )
        assert again["vbd_uuid"] == out["vbd_uuid"] and again["note"] == "already attached"
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
