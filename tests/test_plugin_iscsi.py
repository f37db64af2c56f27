"""attach/detach of iSCSI volumes through the real path: XenAPI client -> simulator ->
exec'd xenvol plugin -> simulator -> real tgt target. Assertions are on pool state."""

import json
import os
import threading
import time

import pytest

from conftest import PluginError, plugin, state
from drivercheck import concurrent, fault_at_every_call, idempotent, placed

CHAP = ("volchap", "Vol-Secret-9f3a1")


def ci(peers, iqn, lun=1, chap=None, secret_uuid=None, **extra):
    return peers.iscsi_info(
        iqn, lun, chap, secret_uuid, **dict({"volume_id": "vol-%s" % lun}, **extra)
    )


def vm(xapi, name):
    ref = xapi.VM.get_by_name_label(name)[0]
    return ref, xapi.VM.get_uuid(ref)


def test_cold_attach_with_chap_on_a_member_then_start(ppool, peers):
    """A halted VM's volume is attached unplugged on its (member) affinity host; VM.start_on
    that host then attaches it with the VM (xapi marks every VBD for attach at start)."""
    xapi = ppool.session().xenapi
    before = state(ppool)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    ref, vm_uuid = vm(xapi, "vm-4")
    assert xapi.VM.get_power_state(ref) == "Halted"
    host = [h for h in ppool.sim.hosts if h.ref == xapi.VM.get_affinity(ref)][0]
    assert host.index != 0
    out = plugin(
        xapi, host, "attach_volume", connection_info=ci(peers, iqn, chap=CHAP), vm_uuid=vm_uuid
    )
    assert out["plugged"] is False and out["device"] == "xvdb"
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    assert xapi.VDI.get_managed(vdi)
    xapi.VM.start_on(ref, host.ref, False, False)
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    assert xapi.VBD.get_currently_attached(vbd) and xapi.VBD.get_device(vbd) == "xvdb"
    listed = plugin(xapi, host, "list_attachments", vm_uuid=vm_uuid)["attachments"]
    assert [(a["vbd_uuid"], a["plugged"]) for a in listed] == [(out["vbd_uuid"], True)]
    xapi.VM.hard_shutdown(ref)
    plugin(xapi, host, "detach_volume", vm_uuid=vm_uuid, mountpoint="xvdb")
    after = state(ppool)  # the VM itself went through a start and a shutdown
    for cls in ("SR", "PBD", "VDI", "secret"):
        assert after[cls] == before[cls]
    assert sorted(after["VBD"]) == sorted(before["VBD"])


def test_attach_detach_with_chap(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-3")  # resident on a member host
    assert host.index != 0
    out = plugin(
        xapi,
        host,
        "attach_volume",
        connection_info=ci(peers, iqn, chap=CHAP),
        vm_uuid=vm_uuid,
        mountpoint="/dev/xvdc",
    )
    assert out["userdevice"] == "2" and out["device"] == "xvdc" and out["plugged"] is True
    assert out["vm_uuid"] == vm_uuid and out["host_uuid"] == host.uuid and out["mode"] == "rw"
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    srrec = xapi.SR.get_record(sr)
    assert srrec["type"] == "iscsi" and srrec["shared"] is True
    assert srrec["other_config"]["xenvol-introduced"] == "true"
    import uuid as u

    assert out["sr_uuid"] == str(
        u.uuid5(u.UUID("3cca4135-a809-5bb3-af62-275fbfe87178"), "127.0.0.1/3260/%s" % iqn)
    )
    # this host's PBD, and the master's: xapi scans a shared SR on the pool master
    pbds = dict((xapi.PBD.get_host(p), xapi.PBD.get_record(p)) for p in srrec["PBDs"])
    assert set(pbds) == {host.ref, ppool.host(0).ref}
    prec = pbds[host.ref]
    assert all(p["currently_attached"] for p in pbds.values())
    dconf = prec["device_config"]
    assert "chappassword" not in dconf and dconf["chapuser"] == CHAP[0]
    assert xapi.secret.get_value(xapi.secret.get_by_uuid(dconf["chappassword_secret"])) == CHAP[1]
    vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
    assert xapi.VDI.get_sm_config(vdi)["LUNid"] == "1"
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    vrec = xapi.VBD.get_record(vbd)
    assert vrec["currently_attached"] and vrec["mode"] == "RW"
    assert vrec["other_config"]["xenvol"] == "true"
    assert vrec["other_config"]["xenvol-volume-id"] == "vol-1"
    listed = plugin(xapi, host, "list_attachments", vm_uuid=vm_uuid)["attachments"]
    assert [a["vbd_uuid"] for a in listed] == [out["vbd_uuid"]]
    # the password is nowhere in the log, the SR, the argv of any plugin run
    log = open(os.path.join(host.root, "var/log/xenvol.log")).read()
    assert CHAP[1] not in log and "attach_volume" in log
    assert CHAP[1] not in json.dumps(srrec)
    detached = plugin(xapi, host, "detach_volume", vm_uuid=vm_uuid, mountpoint="xvdc")
    assert [d["vbd_uuid"] for d in detached["detached"]] == [out["vbd_uuid"]]
    assert "SR forgotten" in detached["note"]
    assert state(ppool) == before


def test_client_made_secret_is_left_to_its_owner(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    secret = xapi.secret.create({"value": CHAP[1], "other_config": {}})
    before = state(ppool)
    sid = xapi.secret.get_uuid(secret)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(
        xapi,
        host,
        "attach_volume",
        connection_info=ci(peers, iqn, chap=CHAP, secret_uuid=sid),
        vm_uuid=vm_uuid,
    )
    dconf = xapi.PBD.get_device_config(xapi.SR.get_PBDs(xapi.SR.get_by_uuid(out["sr_uuid"]))[0])
    assert dconf["chappassword_secret"] != sid  # xapi gave the PBD its own copy
    argv = json.dumps(ppool.admin.plugin_argv())
    assert CHAP[1] not in argv
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before
    xapi.secret.destroy(secret)


def test_two_luns_share_one_sr(ppool, peers):
    xapi = ppool.session().xenapi
    before = state(ppool)
    iqn = peers.new_target(luns=(1, 2))
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    a = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn, 1), vm_uuid=vm_uuid)
    b = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn, "2"), vm_uuid=vm_uuid)
    assert a["sr_uuid"] == b["sr_uuid"] and a["vdi_uuid"] != b["vdi_uuid"]
    assert (a["userdevice"], b["userdevice"]) == ("1", "2")
    d = plugin(xapi, host, "detach_volume", vdi_uuid=a["vdi_uuid"])
    assert "kept" in d["note"]
    sr = xapi.SR.get_by_uuid(a["sr_uuid"])
    assert xapi.PBD.get_currently_attached(xapi.SR.get_PBDs(sr)[0])
    plugin(xapi, host, "detach_volume", vdi_uuid=b["vdi_uuid"])
    assert state(ppool) == before


def test_idempotent_attach_and_detach(ppool, peers):
    idempotent(ppool, ci(peers, peers.new_target(luns=(1,))))


def test_halted_vm_gets_an_unplugged_vbd(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    ref, vm_uuid = vm(xapi, "vm-2")
    xapi.VM.start(ref, False, False)  # a first boot names its root disk's device
    xapi.VM.hard_shutdown(ref)
    before = state(ppool)
    host = ppool.host(0)  # its affinity
    out = plugin(
        xapi,
        host,
        "attach_volume",
        connection_info=ci(peers, iqn, access_mode="ro"),
        vm_uuid=vm_uuid,
        mountpoint="autodetect",
    )
    assert out["plugged"] is False and out["mode"] == "ro" and out["userdevice"] == "1"
    xapi.VM.start(ref, False, False)
    assert xapi.VBD.get_currently_attached(xapi.VBD.get_by_uuid(out["vbd_uuid"]))
    xapi.VM.hard_shutdown(ref)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_existing_sr_is_never_forgotten(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    import uuid as u

    sr_uuid = str(
        u.uuid5(u.UUID("3cca4135-a809-5bb3-af62-275fbfe87178"), "127.0.0.1/3260/%s" % iqn)
    )
    sr = xapi.SR.introduce(sr_uuid, "admin's SR", "", "iscsi", "", True, {})
    pbd = xapi.PBD.create(
        {
            "host": host.ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"target": "127.0.0.1", "targetIQN": iqn},
        }
    )
    xapi.PBD.plug(pbd)
    before = state(ppool)
    out = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    assert out["sr_uuid"] == sr_uuid
    d = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert "not introduced by xenvol" in d["note"]
    after = state(ppool)
    assert xapi.PBD.get_currently_attached(pbd)
    assert after["SR"].keys() == before["SR"].keys() and after["PBD"] == before["PBD"]


def test_wrong_lun_wrong_chap_and_unreachable_change_nothing(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    with pytest.raises(PluginError) as e:
        plugin(
            xapi,
            host,
            "attach_volume",
            connection_info=ci(peers, iqn, 5, chap=CHAP),
            vm_uuid=vm_uuid,
        )
    assert e.value.code == "XENVOL_VDI_NOT_FOUND" and e.value.details["field"] == "data.target_lun"
    assert state(ppool) == before
    with pytest.raises(PluginError) as e:
        plugin(
            xapi,
            host,
            "attach_volume",
            connection_info=ci(peers, iqn, chap=(CHAP[0], "nope-nope")),
            vm_uuid=vm_uuid,
        )
    assert e.value.code == "XENVOL_BACKEND_FAILURE" and e.value.details["sm_code"] == "68"
    assert "Authentication failure" in e.value.message and "nope-nope" not in str(e.value)
    assert state(ppool) == before
    with pytest.raises(PluginError) as e:
        plugin(
            xapi,
            host,
            "attach_volume",
            vm_uuid=vm_uuid,
            connection_info=ci(peers, iqn, target_portal="127.0.0.1:3999"),
        )
    assert e.value.details["sm_code"] == "141"
    assert state(ppool) == before
    log = open(os.path.join(host.root, "var/log/xenvol.log")).read()
    assert "nope-nope" not in log and CHAP[1] not in log


def test_detach_retries_a_rejecting_guest_and_unpluggable_flag(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    xapi.VBD.set_unpluggable(vbd, False)
    ppool.admin.inject_fault(
        "VBD.unplug", ["DEVICE_DETACH_REJECTED", "VBD", vbd, ""], {"nth": 2, "caller": "plugin"}
    )
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert ppool.admin.counts()["VBD.unplug"]["plugin"] == 3
    assert state(ppool) == before


def test_detach_gives_up_after_bounded_retries(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    out = plugin(xapi, host, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm_uuid)
    vbd = xapi.VBD.get_by_uuid(out["vbd_uuid"])
    ppool.admin.inject_fault(
        "VBD.unplug", ["DEVICE_DETACH_REJECTED", "VBD", vbd, ""], {"every": True}
    )
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert e.value.code == "XENVOL_DETACH_FAILED"
    assert xapi.VBD.get_currently_attached(vbd)  # still there, still attached
    ppool.admin.clear()
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])


def test_a_failure_at_each_xapi_call_leaves_the_pool_as_it_was(ppool, peers):
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    fault_at_every_call(ppool, ci(peers, iqn, chap=CHAP), "vm-3", least=10)


def test_concurrent_attaches_and_detaches_of_one_target(ppool, peers):
    iqn = peers.new_target(luns=(1, 2, 3, 4))
    xapi = ppool.session().xenapi

    def one_sr_on_every_host(results):
        sr = xapi.SR.get_by_uuid(results[0][1]["sr_uuid"])
        hosts = set(xapi.PBD.get_host(p) for p in xapi.SR.get_PBDs(sr))
        assert hosts == set(h.ref for h, _r in results.values())
        assert len(xapi.SR.get_VDIs(sr)) == 4

    # Every host releases its share; the last one out forgets the SR (concurrent checks it).
    concurrent(
        ppool,
        [
            ("vm-1", ci(peers, iqn, 1)),
            ("vm-1", ci(peers, iqn, 2)),
            ("vm-3", ci(peers, iqn, 3)),
            ("vm-3", ci(peers, iqn, 4)),
        ],
        attached=one_sr_on_every_host,
    )


def test_mutual_chap_for_real(ppool, peers):
    xapi = ppool.session().xenapi
    mutual = ("tgtuser", "Target-Secret-42")
    iqn = peers.new_target(luns=(1,), chap=CHAP, mutual=mutual)
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    bad = ci(
        peers, iqn, chap=CHAP, target_auth_username=mutual[0], target_auth_password="Wrong-Target-1"
    )
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "attach_volume", connection_info=bad, vm_uuid=vm_uuid)
    assert e.value.details["sm_code"] == "68" and "CHAP_R" in e.value.message
    assert state(ppool) == before
    good = ci(peers, iqn, chap=CHAP, target_auth_username=mutual[0], target_auth_password=mutual[1])
    out = plugin(xapi, host, "attach_volume", connection_info=good, vm_uuid=vm_uuid)
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    for pbd in xapi.SR.get_PBDs(sr):
        dconf = xapi.PBD.get_device_config(pbd)
        assert dconf["incoming_chapuser"] == mutual[0]
        assert "incoming_chappassword" not in dconf and "incoming_chappassword_secret" in dconf
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_ipv6_portal_and_portal_without_port(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(3,), daemon=peers.iscsi6)
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    for portal in ("[::1]:3260", "[::1]", "::1"):
        info = {
            "driver_volume_type": "iscsi",
            "data": {"target_portal": portal, "target_iqn": iqn, "target_lun": "3"},
        }
        out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        dconf = xapi.PBD.get_device_config(xapi.SR.get_PBDs(xapi.SR.get_by_uuid(out["sr_uuid"]))[0])
        assert (dconf["target"], dconf["port"]) == ("::1", "3260")
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_multipath_portals_become_multihomelist(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    before = state(ppool)
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = {
        "driver_volume_type": "iscsi",
        "data": {
            "target_portals": [peers.iscsi.portal, "127.0.0.9:3260"],
            "target_iqns": [iqn, iqn],
            "target_luns": [1, 1],
        },
    }
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    dconf = xapi.PBD.get_device_config(xapi.SR.get_PBDs(xapi.SR.get_by_uuid(out["sr_uuid"]))[0])
    assert dconf["target"] == "127.0.0.1" and dconf["multihomed"] == "true"
    assert dconf["multihomelist"] == "127.0.0.1:3260,127.0.0.9:3260"
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_a_lun_that_appears_late_is_found_by_the_rescans(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    with open(os.path.join(host.root, "etc/xenvol/xenvol.conf"), "w") as fh:
        json.dump({"lun_rescan_delays": [0.5, 1, 2, 4, 8]}, fh)
    log = os.path.join(host.root, "var/log/xenvol.log")

    def missed():
        try:
            with open(log) as fh:
                return "not visible yet; rescanning" in fh.read()
        except FileNotFoundError:
            return False

    def appears_after_the_first_miss():
        # The LUN appears once the plugin has looked and missed it (a wait on the plugin's
        # log, not on time, so a slow machine cannot make it appear before the first look).
        for _ in range(600):
            if missed():
                peers.iscsi.add_lun(iqn, 2, 8)
                return
            time.sleep(0.05)

    array = threading.Thread(target=appears_after_the_first_miss)
    array.start()
    try:
        out = plugin(
            xapi, host, "attach_volume", connection_info=ci(peers, iqn, 2), vm_uuid=vm_uuid
        )
    finally:
        array.join()
    assert xapi.VDI.get_sm_config(xapi.VDI.get_by_uuid(out["vdi_uuid"]))["LUNid"] == "2"
    assert missed()
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
