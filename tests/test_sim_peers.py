"""The iscsi and nfs storage managers against real peers: tgt and nfs-ganesha on loopback."""

import os
import uuid

from simstorage import vdi_introduce_args, write_vhd
from test_sim_wire import fails


def iscsi_sr(xapi, host, iqn, port="3260", chap=None, target="127.0.0.1"):
    sr = xapi.SR.introduce(str(uuid.uuid4()), "iscsi", "", "iscsi", "", True, {"targetIQN": iqn})
    dconf = {"target": target, "port": port, "targetIQN": iqn}
    if chap:
        secret = xapi.secret.create({"value": chap[1]})
        dconf.update(chapuser=chap[0], chappassword_secret=xapi.secret.get_uuid(secret))
    pbd = xapi.PBD.create({"host": host, "SR": sr, "device_config": dconf, "other_config": {}})
    return sr, pbd


def test_iscsi_login_scan_and_stable_vdis(pool, xapi, peers):
    iqn = peers.new_target(luns=(1, 2), chap=("chapuser", "chapsecret123"))
    sr, pbd = iscsi_sr(xapi, pool.host(0).ref, iqn, chap=("chapuser", "chapsecret123"))
    fails("SR_HAS_NO_PBDS", xapi.SR.scan, sr)
    xapi.PBD.plug(pbd)
    # sm BaseISCSI.attach writes iscsi_sessions; SRCommand sr_attach on the SR master marks the
    # SR dirty and scans it at once (SR.after_master_attach): the LUNs are there already.
    assert xapi.PBD.get_other_config(pbd) == {"iscsi_sessions": "1"}
    assert len(xapi.SR.get_VDIs(sr)) == 2
    xapi.SR.scan(sr)
    assert "dirty" not in xapi.SR.get_other_config(sr)
    vdis = dict(
        (v["sm_config"]["LUNid"], v) for v in (xapi.VDI.get_record(r) for r in xapi.SR.get_VDIs(sr))
    )
    assert sorted(vdis) == ["1", "2"]
    # RawISCSISR's ISCSIVDI.load: the `iscsi` type's LUN VDIs are managed.
    assert all(v["managed"] for v in vdis.values())
    assert vdis["1"]["virtual_size"] == str(8 << 20)
    assert vdis["1"]["sm_config"]["backend-kind"] == "vbd"
    assert vdis["1"]["uuid"] == vdis["1"]["location"]
    import hashlib

    h = hashlib.md5(vdis["1"]["sm_config"]["SCSIid"].encode()).hexdigest()
    assert vdis["1"]["uuid"].replace("-", "") == h
    xapi.SR.scan(sr)
    again = sorted(xapi.VDI.get_uuid(r) for r in xapi.SR.get_VDIs(sr))
    assert again == sorted(v["uuid"] for v in vdis.values())
    # a LUN that goes away is forgotten at the next scan
    peers.iscsi.remove_lun(iqn, 2)
    xapi.SR.scan(sr)
    assert [xapi.VDI.get_uuid(r) for r in xapi.SR.get_VDIs(sr)] == [vdis["1"]["uuid"]]
    # and a VBD on the remaining LUN plugs for real
    from test_sim_vm_vbd import vbd_rec

    vm = xapi.VM.get_by_name_label("vm-1")[0]
    vbd = xapi.VBD.create(vbd_rec(vm, xapi.VDI.get_by_uuid(vdis["1"]["uuid"])))
    assert xapi.VBD.get_other_config(vbd)["backend-kind"] == "vbd"
    xapi.VBD.plug(vbd)
    xapi.VBD.unplug(vbd)
    xapi.PBD.unplug(pbd)
    assert xapi.PBD.get_other_config(pbd) == {}
    fails("SR_HAS_NO_PBDS", xapi.SR.scan, sr)


def test_iscsi_failures_are_real(pool, xapi, peers):
    iqn = peers.new_target(chap=("chapuser", "chapsecret123"))
    h = pool.host(0).ref
    cases = [
        (
            dict(chap=("chapuser", "wrongsecret99")),
            "SR_BACKEND_FAILURE_68",
            "Authentication failure",
        ),
        (dict(), "SR_BACKEND_FAILURE_68", "Authentication failure"),
        (dict(port="3999", chap=("chapuser", "chapsecret123")), "SR_BACKEND_FAILURE_141", ""),
        (dict(port="99999"), "SR_BACKEND_FAILURE_142", ""),
        (dict(target="192.0.2.1"), "SR_BACKEND_FAILURE_141", "not reachable"),
    ]
    for kw, code, text in cases:
        sr, pbd = iscsi_sr(xapi, h, iqn, **kw)
        d = fails(code, xapi.PBD.plug, pbd)
        assert text in d[2], d
        assert not xapi.PBD.get_currently_attached(pbd)
    sr, pbd = iscsi_sr(xapi, h, iqn + "-wrong", chap=("chapuser", "chapsecret123"))
    d = fails("SR_BACKEND_FAILURE_68", xapi.PBD.plug, pbd)
    assert "Target not found" in d[2]


def test_iscsi_missing_iqn_lists_targets(pool, xapi, peers):
    iqn = peers.new_target()
    sr = xapi.SR.introduce(str(uuid.uuid4()), "iscsi", "", "iscsi", "", True, {})
    pbd = xapi.PBD.create(
        {
            "host": pool.host(0).ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"target": "127.0.0.1"},
        }
    )
    d = fails("SR_BACKEND_FAILURE_96", xapi.PBD.plug, pbd)
    assert "<TargetIQN>%s</TargetIQN>" % iqn in d[3]


def nfs_sr(pool, xapi, peers, host=0, version="3", serverpath="/srv", make_dir=True, vhds=()):
    sr_uuid = str(uuid.uuid4())
    if make_dir:
        d = os.path.join(peers.nfs_export, sr_uuid)
        os.makedirs(d)
        for vdi_uuid, size in vhds:
            write_vhd(os.path.join(d, vdi_uuid + ".vhd"), size)
    sr = xapi.SR.introduce(sr_uuid, "nfs", "", "nfs", "user", True, {})
    pbd = xapi.PBD.create(
        {
            "host": pool.host(host).ref,
            "SR": sr,
            "other_config": {},
            "device_config": {
                "server": "127.0.0.1",
                "serverpath": serverpath,
                "nfsversion": version,
            },
        }
    )
    return sr, pbd


def test_nfs_plug_scan_vhds(pool, xapi, peers):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    for version in ("3", "4.1"):
        sr, pbd = nfs_sr(pool, xapi, peers, version=version, vhds=[(a, 1 << 30), (b, 64 << 20)])
        xapi.PBD.plug(pbd)
        xapi.SR.scan(sr)
        sizes = dict(
            (xapi.VDI.get_uuid(r), xapi.VDI.get_virtual_size(r)) for r in xapi.SR.get_VDIs(sr)
        )
        assert sizes == {a: str(1 << 30), b: str(64 << 20)}
        xapi.PBD.unplug(pbd)
        xapi.SR.forget(sr)


def test_nfs_failures_are_real(pool, xapi, peers):
    sr, pbd = nfs_sr(pool, xapi, peers, serverpath="/nosuch")
    d = fails("SR_BACKEND_FAILURE_73", xapi.PBD.plug, pbd)
    assert "MNT3ERR_ACCES" in d[2]
    sr, pbd = nfs_sr(pool, xapi, peers, make_dir=False)
    fails("SR_BACKEND_FAILURE_73", xapi.PBD.plug, pbd)
    sr, pbd = nfs_sr(pool, xapi, peers, version="2")
    fails("SR_BACKEND_FAILURE_1200", xapi.PBD.plug, pbd)
    sr = xapi.SR.introduce(str(uuid.uuid4()), "nfs", "", "nfs", "user", True, {})
    pbd = xapi.PBD.create(
        {
            "host": pool.host(0).ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"server": "127.0.0.1"},
        }
    )
    fails("SR_BACKEND_FAILURE_101", xapi.PBD.plug, pbd)


def test_file_sr_under_the_host_root(pool, xapi):
    root = pool.host(1).root
    os.makedirs(os.path.join(root, "srv/images"))
    vdi = str(uuid.uuid4())
    with open(os.path.join(root, "srv/images", vdi + ".raw"), "wb") as fh:
        fh.truncate(4096)
    sr = xapi.SR.introduce(str(uuid.uuid4()), "files", "", "file", "user", False, {})
    pbd = xapi.PBD.create(
        {
            "host": pool.host(1).ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"location": "/srv/images"},
        }
    )
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    assert [xapi.VDI.get_uuid(r) for r in xapi.SR.get_VDIs(sr)] == [vdi]
    bad = xapi.SR.introduce(str(uuid.uuid4()), "files", "", "file", "user", False, {})
    p2 = xapi.PBD.create(
        {
            "host": pool.host(1).ref,
            "SR": bad,
            "other_config": {},
            "device_config": {"location": "/nowhere"},
        }
    )
    fails("SR_BACKEND_FAILURE_61", xapi.PBD.plug, p2)


def test_iscsi_probe_lists_known_srs(pool, xapi, peers):
    iqn = peers.new_target()
    sr, pbd = iscsi_sr(xapi, pool.host(0).ref, iqn)
    out = xapi.SR.probe(pool.host(0).ref, {"target": "127.0.0.1", "targetIQN": iqn}, "iscsi", {})
    assert "<UUID>%s</UUID>" % xapi.SR.get_uuid(sr) in out


def test_vdi_introduce_of_an_iscsi_lun(pool, xapi, peers):
    """xapi_vdi.ml introduce on the SR master, with BaseISCSI's LUN lookup (RAWVDI.introduce):
    the LUN's record is found by location, set managed, and other_config, xenstore_data,
    sharable and type are overwritten by the arguments; names only when given."""
    iqn = peers.new_target(luns=(1,))
    sr, pbd = iscsi_sr(xapi, pool.host(0).ref, iqn)
    xapi.PBD.plug(pbd)
    vdi = xapi.SR.get_VDIs(sr)[0]
    rec = xapi.VDI.get_record(vdi)
    xapi.VDI.add_to_other_config(vdi, "kept", "no")
    ref = xapi.VDI.introduce(
        *vdi_introduce_args(
            rec["uuid"],
            sr,
            rec["location"],
            {"LUNid": "1"},
            type_="system",
            sharable=True,
            other_config={"mine": "1"},
            xenstore_data={"k": "v"},
        )
    )
    assert ref == vdi
    after = xapi.VDI.get_record(vdi)
    assert after["managed"] is True and after["other_config"] == {"mine": "1"}
    assert after["xenstore_data"] == {"k": "v"} and after["sharable"] is True
    assert after["type"] == "system" and after["name_label"] == rec["name_label"]
    xapi.VDI.introduce(
        *vdi_introduce_args(rec["uuid"], sr, rec["location"], {"LUNid": "1"}, name_label="lun one")
    )
    assert xapi.VDI.get_name_label(vdi) == "lun one"
    d = fails(
        "LOCATION_NOT_UNIQUE",
        xapi.VDI.introduce,
        *vdi_introduce_args(
            "bbbbbbbb-0000-0000-0000-000000000000", sr, rec["location"], {"LUNid": "1"}
        ),
    )
    assert d[1:] == [sr, rec["location"]]
    # a LUN the target does not have: SM fails, xapi reports Vdi_does_not_exist
    d = fails(
        "INTERNAL_ERROR",
        xapi.VDI.introduce,
        *vdi_introduce_args(
            "cccccccc-0000-0000-0000-000000000000", sr, "elsewhere", {"LUNid": "9"}
        ),
    )
    assert "Vdi_does_not_exist" in d[1]
    # a member's PBD is not enough: introduce runs on the SR master (the pool master here)
    xapi.PBD.unplug(pbd)
    fails(
        "SR_HAS_NO_PBDS",
        xapi.VDI.introduce,
        *vdi_introduce_args(rec["uuid"], sr, rec["location"], {"LUNid": "1"}),
    )
