"""A journal written before issue 23's layout (compensations in undo.py, recovery in journal.py)
replays as ever: tests/data/journal-0.2-attach-killed.json is an attach_volume killed after its
VBD was plugged (every kind of line: header, steps, a step that replaces others, a lease, a
commit, a done step, a past attempt), with the pool's refs filled in. Its compensations are
found by the names it was written with, the lease it names is dropped, and what it committed
stays."""

import os

from conftest import plugin
from killcheck import journals
from test_opid import state
from test_plugin_iscsi import placed
from test_plugin_session import file_volume

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
OTHER_SR = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"  # no such SR: its release does nothing


def saved_journal(host, **refs):
    with open(os.path.join(DATA, "journal-0.2-attach-killed.json")) as fh:
        text = fh.read()
    for key, value in refs.items():
        text = text.replace("@%s@" % key, value)
    assert "@" not in text
    d = os.path.join(host.root, "var/lib/xenvol/ops")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "attach-0.2.json"), "w") as fh:
        fh.write(text)


def test_a_journal_of_the_previous_layout_replays(ppool):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    info = file_volume(host)
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    lease = "%s/attach-0.2/1/1" % host.uuid
    # The attach as if killed after its VBD.plug: its lease still on the SR, its journal left.
    xapi.SR.add_to_other_config(sr, "xenvol-lease", lease)
    saved_journal(
        host,
        HOST_UUID=host.uuid,
        HOST=xapi.host.get_by_uuid(host.uuid),
        SR_UUID=out["sr_uuid"],
        VDI_UUID=out["vdi_uuid"],
        VDI=vdi,
        VM=vm_ref,
        VBD=xapi.VBD.get_by_uuid(out["vbd_uuid"]),
        LEASE=lease,
        OTHER_SR_UUID=OTHER_SR,
    )
    assert plugin(xapi, host, "recover", probe="true")["dead"] == ["attach-0.2"]
    done = plugin(xapi, host, "recover")
    assert done["recovered"] == ["attach-0.2"] and done["failed"] == []
    assert journals(host) == []
    # Steps 7..5 undone: the VBD unplugged and gone, the VDI's name as it was.
    assert out["vbd_uuid"] not in [xapi.VBD.get_uuid(v) for v in xapi.VM.get_VBDs(vm_ref)]
    assert xapi.VDI.get_name_label(vdi) == "as it was"
    assert xapi.VDI.get_name_description(vdi) == "before xenvol"
    assert "xenvol-named" not in xapi.VDI.get_other_config(vdi)
    # The committed set-up stays; the dead operation's lease is dropped.
    other = xapi.SR.get_other_config(sr)
    assert "xenvol-lease" not in other and other.get("xenvol-introduced") == "true"
    assert xapi.PBD.get_currently_attached(xapi.SR.get_PBDs(sr)[0])
    # What nothing uses now goes as ever.
    plugin(xapi, host, "disconnect_volume", sr_uuid=out["sr_uuid"], vdi_uuid=out["vdi_uuid"])
    assert state(ppool) == before
