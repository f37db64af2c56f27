"""The smb storage manager against a real smbd on loopback (sm drivers/SMBSR.py, cifutils.py)."""

import os
import uuid

from simstorage import write_vhd
from test_sim_wire import fails


def vhd(directory, vdi_uuid, size):
    write_vhd(os.path.join(directory, vdi_uuid + ".vhd"), size)


def smb_sr(
    pool,
    xapi,
    peers,
    host=0,
    server="\\\\127.0.0.1\\vols",
    user=None,
    password=None,
    make_dir=True,
    vhds=(),
):
    peers.smb  # noqa: B018 (the property starts smbd, or skips)
    sr_uuid = str(uuid.uuid4())
    if make_dir:
        d = os.path.join(peers.smb_share, sr_uuid)
        os.makedirs(d)
        for vdi_uuid, size in vhds:
            vhd(d, vdi_uuid, size)
    sr = xapi.SR.introduce(sr_uuid, "smb", "", "smb", "user", True, {})
    dconf = {"server": server}
    if user is not None:
        dconf["username"] = user
    if password is not None:
        dconf["password"] = password  # xapi turns it into password_secret
    pbd = xapi.PBD.create(
        {"host": pool.host(host).ref, "SR": sr, "other_config": {}, "device_config": dconf}
    )
    return sr, pbd


def test_smb_plug_scan_probe(pool, xapi, peers):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    sr, pbd = smb_sr(
        pool,
        xapi,
        peers,
        user=peers.SMB_USER,
        password=peers.SMB_PASSWORD,
        vhds=[(a, 1 << 30), (b, 64 << 20)],
    )
    assert "password_secret" in xapi.PBD.get_device_config(pbd)
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    sizes = dict((xapi.VDI.get_uuid(r), xapi.VDI.get_virtual_size(r)) for r in xapi.SR.get_VDIs(sr))
    assert sizes == {a: str(1 << 30), b: str(64 << 20)}
    # the attach's write check left nothing behind
    assert sorted(os.listdir(os.path.join(peers.smb_share, xapi.SR.get_uuid(sr)))) == sorted(
        [a + ".vhd", b + ".vhd"]
    )
    probe = xapi.SR.probe(
        pool.host(0).ref,
        {
            "server": "//127.0.0.1/vols",
            "username": "WORKGROUP\\" + peers.SMB_USER,
            "password": peers.SMB_PASSWORD,
        },
        "smb",
        {},
    )
    assert "<UUID>%s</UUID>" % xapi.SR.get_uuid(sr) in probe
    xapi.PBD.unplug(pbd)


def test_smb_failures_are_the_sm_codes(pool, xapi, peers):
    # wrong password, unknown user, unknown share, guest refused: SMBMount 111
    for kw in (
        {"user": peers.SMB_USER, "password": "wrong-password"},
        {"user": "nobody", "password": peers.SMB_PASSWORD},
        {"user": peers.SMB_USER, "password": peers.SMB_PASSWORD, "server": "\\\\127.0.0.1\\nosuch"},
        {},
        {"user": peers.SMB_USER},
    ):  # a username without password mounts as guest
        sr, pbd = smb_sr(pool, xapi, peers, **kw)
        d = fails("SR_BACKEND_FAILURE_111", xapi.PBD.plug, pbd)
        assert d[2] == "SMB mount error [opterr=mount failed with return code 32]"
        assert not xapi.PBD.get_currently_attached(pbd)
    # a UNC mount.cifs cannot parse
    sr, pbd = smb_sr(pool, xapi, peers, server="\\\\127.0.0.1")
    assert "return code 1]" in fails("SR_BACKEND_FAILURE_111", xapi.PBD.plug, pbd)[2]
    # the share mounts but <share>/<sr-uuid> does not exist: SharedFileSystemNoWrite 461
    sr, pbd = smb_sr(
        pool, xapi, peers, user=peers.SMB_USER, password=peers.SMB_PASSWORD, make_dir=False
    )
    fails("SR_BACKEND_FAILURE_461", xapi.PBD.plug, pbd)
    # a server that is not here (the simulator never leaves the machine)
    sr, pbd = smb_sr(pool, xapi, peers, server="\\\\192.0.2.1\\vols")
    fails("SR_BACKEND_FAILURE_111", xapi.PBD.plug, pbd)
    # no server: ConfigServerMissing 102; DOMAIN\a\b: cifutils' CIFSException, fault 1200
    sr = xapi.SR.introduce(str(uuid.uuid4()), "smb", "", "smb", "user", True, {})
    pbd = xapi.PBD.create(
        {"host": pool.host(0).ref, "SR": sr, "other_config": {}, "device_config": {}}
    )
    fails("SR_BACKEND_FAILURE_102", xapi.PBD.plug, pbd)
    sr, pbd = smb_sr(pool, xapi, peers, user="a\\b\\c", password="x")
    assert "3 were given" in fails("SR_BACKEND_FAILURE_1200", xapi.PBD.plug, pbd)[2]


def test_smb_vdi_attach_needs_the_file(pool, xapi, peers):
    from test_sim_vm_vbd import vbd_rec

    a = str(uuid.uuid4())
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    host = [i for i in range(3) if pool.host(i).ref == xapi.VM.get_resident_on(vm)][0]
    sr, pbd = smb_sr(
        pool,
        xapi,
        peers,
        host=host,
        user=peers.SMB_USER,
        password=peers.SMB_PASSWORD,
        vhds=[(a, 1 << 20)],
    )
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    vdi = xapi.VDI.get_by_uuid(a)
    os.unlink(os.path.join(peers.smb_share, xapi.SR.get_uuid(sr), a + ".vhd"))
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    fails("SR_BACKEND_FAILURE_46", xapi.VBD.plug, vbd)
