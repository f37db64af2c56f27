"""SR, PBD, VDI and secret messages of the simulator (in-memory SR types)."""

import time

from simstorage import SR_UUID, claim, hba_luns, introduce, pbd, vdi_introduce_args
from test_sim_wire import fails

# An in-memory type (glusterfs now has a real peer: test_sim_gluster.py).
CEPH = {"server": "mon1", "serverpath": "/v"}


def test_introduce_twice_is_sr_uuid_exists(xapi):
    sr = introduce(xapi)
    rec = xapi.SR.get_record(sr)
    assert rec["uuid"] == SR_UUID and rec["physical_size"] == "-1" and rec["PBDs"] == []
    assert fails("SR_UUID_EXISTS", introduce, xapi)[1] == SR_UUID
    assert xapi.SR.get_by_name_label("vol") == [sr]
    assert xapi.SR.get_type(introduce(xapi, "NFS", "")) == "nfs"


def test_pbd_lifecycle_and_sr_forget(pool, xapi):
    sr = introduce(xapi)
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000001", {"virtual_size": "1024"})
    h0, h1 = pool.host(0).ref, pool.host(1).ref
    p0 = pbd(xapi, h0, sr, CEPH)
    assert xapi.PBD.get_other_config(p0) == {}  # PBD.create ignores other_config
    d = fails("PBD_EXISTS", pbd, xapi, h0, sr, CEPH)
    assert d[1:] == [sr, h0, p0]
    fails("SR_HAS_NO_PBDS", xapi.SR.scan, sr)
    xapi.PBD.plug(p0)
    xapi.PBD.plug(p0)  # plugging a plugged PBD is fine
    xapi.SR.scan(sr)
    assert len(xapi.SR.get_VDIs(sr)) == 1
    p1 = pbd(xapi, h1, sr, CEPH)
    xapi.PBD.plug(p1)
    fails("SR_HAS_PBD", xapi.SR.forget, sr)
    d = fails("OPERATION_NOT_ALLOWED", xapi.PBD.destroy, p0)
    assert d[1] == "PBD is currently attached"
    xapi.PBD.unplug(p0)
    xapi.PBD.unplug(p0)
    xapi.PBD.unplug(p1)
    xapi.SR.forget(sr)
    for ref, cls in ((sr, "SR"), (p0, "PBD"), (p1, "PBD")):
        fails("HANDLE_INVALID", getattr(xapi, cls).get_record, ref)
    assert not [
        v for v in xapi.VDI.get_all_records().values() if v["location"].startswith("aaaaaaaa")
    ]


def test_sr_not_sharable_and_unknown_driver(pool, xapi):
    sr = introduce(xapi, "dummy", shared=False)
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000002", {})
    a = pbd(xapi, pool.host(0).ref, sr, {})
    b = pbd(xapi, pool.host(1).ref, sr, {})
    xapi.PBD.plug(a)
    assert fails("SR_NOT_SHARABLE", xapi.PBD.plug, b)[1:] == [sr, pool.host(0).ref]
    odd = introduce(xapi, "weirdfs", "5f1c6a4e-0a2b-4c3d-8e9f-000000000000")
    c = pbd(xapi, pool.host(0).ref, odd, {})
    assert fails("SR_UNKNOWN_DRIVER", xapi.PBD.plug, c)[1] == "weirdfs"


def test_missing_device_config_key_is_the_sm_error(pool, xapi):
    sr = introduce(xapi, "cephfs")
    p = pbd(xapi, pool.host(0).ref, sr, {"server": "mon1"})
    # CephFSSR.load reads dconf['serverpath'] unchecked: the KeyError reaches SRCommand.run,
    # which answers the generic fault 1200 with str(exception).
    d = fails("SR_BACKEND_FAILURE_1200", xapi.PBD.plug, p)
    assert d[1] == "" and d[2] == "'serverpath'"
    assert not xapi.PBD.get_currently_attached(p)
    sr2 = introduce(xapi, "glusterfs", "5f1c6a4e-0a2b-4c3d-8e9f-000000000001")
    p2 = pbd(xapi, pool.host(0).ref, sr2, {"server": "gluster:/nothing-here"})
    fails("SR_BACKEND_FAILURE_12", xapi.PBD.plug, p2)


def test_unplug_refused_while_a_vbd_is_attached(pool, xapi):
    from test_sim_vm_vbd import vbd_rec

    sr = introduce(xapi)
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000003", {})
    p = pbd(xapi, pool.host(0).ref, sr, CEPH)
    xapi.PBD.plug(p)
    xapi.SR.scan(sr)
    vdi = xapi.SR.get_VDIs(sr)[0]
    vm = xapi.VM.get_by_name_label("vm-1")[0]  # resident on host 0
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    xapi.VBD.plug(vbd)
    d = fails("VDI_IN_USE", xapi.PBD.unplug, p)
    assert d[1:] == [vdi]
    xapi.VBD.unplug(vbd)
    xapi.PBD.unplug(p)


def test_secrets_in_device_config(pool, xapi):
    sr = introduce(xapi, "smb")
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000004", {})
    before = set(xapi.secret.get_all())
    p = pbd(
        xapi,
        pool.host(0).ref,
        sr,
        {"server": "\\\\srv\\share", "username": "u", "password": "s3cret"},
    )
    dconf = xapi.PBD.get_device_config(p)
    assert "password" not in dconf
    # xapi moves the password into a secret, then duplicates it for the PBD: two secrets,
    # the first one orphaned (xapi_secret.ml move_passwds_to_secrets + duplicate_passwds).
    made = set(xapi.secret.get_all()) - before
    assert len(made) == 2
    assert dconf["password_secret"] in [xapi.secret.get_uuid(s) for s in made]
    assert sorted(xapi.secret.get_value(s) for s in made) == ["s3cret", "s3cret"]
    # ... also when the create then fails.
    before = set(xapi.secret.get_all())
    fails("PBD_EXISTS", pbd, xapi, pool.host(0).ref, sr, {"server": "x", "password": "again"})
    made = set(xapi.secret.get_all()) - before
    assert [xapi.secret.get_value(s) for s in made] == ["again"]
    # a referenced secret is copied: the PBD owns its own
    mine = xapi.secret.create({"value": "other", "other_config": {}})
    mine_uuid = xapi.secret.get_uuid(mine)
    p2 = pbd(
        xapi,
        pool.host(1).ref,
        sr,
        {"server": "\\\\srv\\share", "username": "u", "password_secret": mine_uuid},
    )
    copied = xapi.PBD.get_device_config(p2)["password_secret"]
    assert copied != mine_uuid
    assert xapi.secret.get_value(xapi.secret.get_by_uuid(copied)) == "other"
    d = fails("UUID_INVALID", pbd, xapi, pool.host(2).ref, sr, {"password_secret": "nope"})
    assert d[1:] == ["secret", "nope"]
    xapi.PBD.destroy(p2)  # destroys its copy, not the original
    fails("UUID_INVALID", xapi.secret.get_by_uuid, copied)
    assert xapi.secret.get_value(mine) == "other"
    d = fails("VALUE_NOT_SUPPORTED", pbd, xapi, pool.host(2).ref, sr, {"SRmaster": "true"})
    assert d[1] == "SRmaster"


def test_bad_secret_at_plug_is_sm_error_20(pool, xapi):
    sr = introduce(xapi, "smb")
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000005", {})
    s = xapi.secret.create({"value": "pw"})
    p = pbd(
        xapi,
        pool.host(0).ref,
        sr,
        {"server": "x", "username": "u", "password_secret": xapi.secret.get_uuid(s)},
    )
    copy = xapi.PBD.get_device_config(p)["password_secret"]
    xapi.secret.destroy(xapi.secret.get_by_uuid(copy))
    d = fails("SR_BACKEND_FAILURE_20", xapi.PBD.plug, p)
    assert "Unable to look up secret" in d[2]


def test_secret_introduce_and_destroy(xapi):
    ref = xapi.secret.introduce("0e0e0e0e-1111-2222-3333-444444444444", "v", {})
    assert xapi.secret.get_uuid(ref) == "0e0e0e0e-1111-2222-3333-444444444444"
    # xapi_secret.ml introduce -> Db_exn.Uniqueness_constraint_violation -> INTERNAL_ERROR
    uuid = "0e0e0e0e-1111-2222-3333-444444444444"
    d = fails("INTERNAL_ERROR", xapi.secret.introduce, uuid, "w", {})
    assert d[1] == (
        'Db_exn.Uniqueness_constraint_violation("secret", "uuid", '
        '"0e0e0e0e-1111-2222-3333-444444444444")'
    )
    xapi.secret.destroy(ref)
    fails("HANDLE_INVALID", xapi.secret.get_value, ref)


def test_vdi_introduce_rules(pool, xapi):
    nfs = introduce(xapi, "nfs", "5f1c6a4e-0a2b-4c3d-8e9f-00000000000a")
    d = fails(
        "SR_OPERATION_NOT_SUPPORTED",
        xapi.VDI.introduce,
        *vdi_introduce_args("", nfs, "loc"),
    )
    assert d[1] == nfs
    hba = introduce(xapi, "hba", "5f1c6a4e-0a2b-4c3d-8e9f-00000000000b")
    fails(
        "SR_HAS_NO_PBDS",
        xapi.VDI.introduce,
        *vdi_introduce_args("", hba, "loc"),
    )


def test_background_scan_of_dirty_srs(pool, xapi):
    """A master plug marks the SR dirty; xapi's scanner thread (every 30 s, scaled by the SM
    timing) scans it and removes the mark, picking up VDIs that appeared meanwhile."""
    sr = introduce(xapi)
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000010", {})
    p = pbd(xapi, pool.host(0).ref, sr, CEPH)
    xapi.PBD.plug(p)
    assert len(xapi.SR.get_VDIs(sr)) == 1  # SR.after_master_attach scanned already
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000011", {})
    deadline = time.time() + 20
    while len(xapi.SR.get_VDIs(sr)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(xapi.SR.get_VDIs(sr)) == 2
    assert "dirty" not in xapi.SR.get_other_config(sr)


def test_member_plug_of_a_shared_sr_does_not_mark_it(pool, xapi):
    sr = introduce(xapi)
    pool.admin.put_vdi(SR_UUID, "aaaaaaaa-0000-0000-0000-000000000012", {})
    p = pbd(xapi, pool.host(1).ref, sr, CEPH)
    xapi.PBD.plug(p)
    # not the SR master: no dirty mark, no scan; and SR.scan needs the master's PBD.
    assert xapi.SR.get_VDIs(sr) == [] and "dirty" not in xapi.SR.get_other_config(sr)
    fails("SR_HAS_NO_PBDS", xapi.SR.scan, sr)


def test_hba_luns_are_unmanaged_until_claimed(pool, xapi):
    from test_sim_vm_vbd import vbd_rec

    sr, _p, luns = hba_luns(pool, xapi, {3: ("3600a0", 4096)}, shared=True)
    vdi = luns["3600a0"]
    rec = xapi.VDI.get_record(vdi)
    assert rec["managed"] is False and rec["sm_config"] == {
        "LUNid": "3",
        "SCSIid": "3600a0",
        "backend-kind": "vbd",
    }
    # sm LUNperVDI: uuid = location = md5(SCSIid)
    assert (
        rec["uuid"]
        == rec["location"]
        == "%s-%s-%s-%s-%s"
        % (lambda h: (h[:8], h[8:12], h[12:16], h[16:20], h[20:]))(
            __import__("hashlib").md5(b"3600a0").hexdigest()
        )
    )
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    assert fails("VDI_NOT_MANAGED", xapi.VBD.plug, vbd)[1:] == [vbd]
    # HBASR._getLUNbySMconfig always raises VDIUnavailable: introduce cannot adopt an hba LUN,
    # and storage_smapiv1.ml turns the SM failure into Vdi_does_not_exist (INTERNAL_ERROR).
    d = fails(
        "INTERNAL_ERROR",
        xapi.VDI.introduce,
        *vdi_introduce_args(rec["uuid"], sr, rec["location"], {"LUNid": "3"}),
    )
    assert d[1] == "Storage_error ([S(Vdi_does_not_exist);S(%s)])" % rec["location"]
    # the session of a client is no SM session (sm.ml assert_session_has_internal_sr_access)
    assert fails("PERMISSION_DENIED", xapi.VDI.set_managed, vdi, True)[1:] == [""]
    assert xapi.VDI.create(claim(sr, 1)) == vdi
    xapi.VBD.plug(vbd)
    # a rescan leaves managed as it is (sm VDI._db_update does not touch it)
    xapi.SR.scan(sr)
    assert xapi.VDI.get_managed(vdi) is True
    xapi.VBD.unplug(vbd)
    xapi.VBD.destroy(vbd)


def test_vdi_introduce_errors(pool, xapi):
    sr, p, luns = hba_luns(pool, xapi, {3: ("3600a0", 4096)}, shared=True)
    vdi = luns["3600a0"]
    loc = xapi.VDI.get_location(vdi)
    d = fails(
        "LOCATION_NOT_UNIQUE",
        xapi.VDI.introduce,
        *vdi_introduce_args("bbbbbbbb-0000-0000-0000-000000000000", sr, loc, {"LUNid": "3"}),
    )
    assert d[1:] == [sr, loc]
    d = fails(
        "INTERNAL_ERROR",
        xapi.VDI.introduce,
        *vdi_introduce_args(
            "cccccccc-0000-0000-0000-000000000000", sr, "elsewhere", {"LUNid": "99"}
        ),
    )
    assert "Vdi_does_not_exist" in d[1]
    xapi.PBD.unplug(p)
    fails(
        "SR_HAS_NO_PBDS",
        xapi.VDI.introduce,
        *vdi_introduce_args(xapi.VDI.get_uuid(vdi), sr, loc, {"LUNid": "3"}),
    )
    other = introduce(xapi, "glusterfs", "5f1c6a4e-0a2b-4c3d-8e9f-000000000030")
    assert (
        fails(
            "SR_OPERATION_NOT_SUPPORTED",
            xapi.VDI.introduce,
            *vdi_introduce_args("dddddddd-0000-0000-0000-000000000000", other, "x"),
        )[1]
        == other
    )


def test_pbd_set_device_config_is_for_sm_only(pool, xapi):
    sr = introduce(xapi)
    p = pbd(xapi, pool.host(0).ref, sr, CEPH)
    before = set(xapi.secret.get_all())
    fails("PERMISSION_DENIED", xapi.PBD.set_device_config, p, {"server": "h", "password": "pw"})
    assert xapi.PBD.get_device_config(p) == CEPH
    assert len(set(xapi.secret.get_all()) - before) == 1  # moved to a secret first, orphaned
