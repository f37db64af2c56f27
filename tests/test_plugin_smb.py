"""The smb driver end to end: client -> simulator -> plugin -> smb SM -> real smbd."""

import os
import uuid

import pytest

from conftest import PluginError, plugin, state
from drivercheck import concurrent, fault_at_every_call, idempotent, placed, refused
from test_sim_smb import vhd

BAD = "XENVOL_INVALID_CONNECTION_INFO"


@pytest.fixture
def layout(peers):
    """An SR directory on the share with two VHDs: (sr_uuid, [vdi uuids])."""
    peers.smb  # noqa: B018 (the property starts smbd, or skips)
    sr_uuid, vdis = str(uuid.uuid4()), [str(uuid.uuid4()), str(uuid.uuid4())]
    os.makedirs(os.path.join(peers.smb_share, sr_uuid))
    for v in vdis:
        vhd(os.path.join(peers.smb_share, sr_uuid), v, 16 << 20)
    return sr_uuid, vdis


def ci(peers, sr_uuid, vdi_uuid, **extra):
    data = {
        "export": "//127.0.0.1/vols",
        "sr_uuid": sr_uuid,
        "vdi_uuid": vdi_uuid,
        "options": "-o username=%s,password=%s" % (peers.SMB_USER, peers.SMB_PASSWORD),
    }
    data.update(extra)
    return {"driver_volume_type": "smbfs", "data": data}


def test_attach_detach_through_a_real_samba(ppool, peers, layout):
    xapi = ppool.session().xenapi
    sr_uuid, (a, _b) = layout
    before = state(ppool)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-3")
    out = plugin(
        xapi, host, "attach_volume", connection_info=ci(peers, sr_uuid, a), vm_uuid=vm_uuid
    )
    assert out["sr_uuid"] == sr_uuid and out["vdi_uuid"] == a and out["plugged"]
    sr = xapi.SR.get_by_uuid(sr_uuid)
    assert xapi.SR.get_type(sr) == "smb"
    for p in xapi.SR.get_PBDs(sr):
        dconf = xapi.PBD.get_device_config(p)
        assert dconf["server"] == "\\\\127.0.0.1\\vols" and dconf["username"] == peers.SMB_USER
        assert "password" not in dconf
        secret = xapi.secret.get_by_uuid(dconf["password_secret"])
        assert xapi.secret.get_value(secret) == peers.SMB_PASSWORD
    log = open(os.path.join(host.root, "var/log/xenvol.log")).read()
    assert peers.SMB_PASSWORD not in log
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_secret_uuid_domain_user_and_unc_forms(ppool, peers, layout):
    xapi = ppool.session().xenapi
    sr_uuid, (a, _b) = layout
    mine = xapi.secret.create({"value": peers.SMB_PASSWORD, "other_config": {}})
    info = {
        "driver_volume_type": "smb",
        "data": {
            "server": "\\\\127.0.0.1\\vols",
            "username": "WORKGROUP\\" + peers.SMB_USER,
            "password_secret": xapi.secret.get_uuid(mine),
            "sr_uuid": sr_uuid,
            "vdi_uuid": a,
            "smb_version": "3.0",
            "format": "vhd",
        },
    }
    a_out = idempotent(ppool, info)
    assert a_out["vdi_uuid"] == a
    assert xapi.secret.get_value(mine) == peers.SMB_PASSWORD  # the caller's secret is left


def test_wrong_password_share_and_missing_file_change_nothing(ppool, peers, layout):
    sr_uuid, (a, _b) = layout
    xapi = ppool.session().xenapi
    before = state(ppool)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    for info, code in [
        (
            ci(peers, sr_uuid, a, options="-o username=%s,password=wrong-one" % peers.SMB_USER),
            "SR_BACKEND_FAILURE_111",
        ),
        (ci(peers, sr_uuid, a, export="//127.0.0.1/nosuch"), "SR_BACKEND_FAILURE_111"),
        (ci(peers, str(uuid.uuid4()), a), "SR_BACKEND_FAILURE_461"),
        (ci(peers, sr_uuid, str(uuid.uuid4())), "XENVOL_VDI_NOT_FOUND"),
    ]:
        with pytest.raises(PluginError) as e:
            plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        got = [e.value.code] + e.value.details.get("xapi_error", [])[:1]
        assert code in got, (code, got, e.value.message)
        assert "wrong-one" not in e.value.message
        assert state(ppool) == before


def test_fault_at_every_xapi_call(ppool, peers, layout):
    sr_uuid, (a, _b) = layout
    fault_at_every_call(ppool, ci(peers, sr_uuid, a))


def test_concurrent_attaches_share_one_sr(ppool, peers, layout):
    sr_uuid, (a, b) = layout
    concurrent(ppool, [("vm-1", ci(peers, sr_uuid, a)), ("vm-3", ci(peers, sr_uuid, b))])


@pytest.mark.parametrize(
    "extra,field,text",
    [
        ({"export": "127.0.0.1/vols"}, "data.export", "UNC"),
        ({"export": "//127.0.0.1"}, "data.export", "share"),
        ({"export": "//127.0.0.1/../etc"}, "data.export", "'..'"),
        ({"export": "//127.0.0.1:139/vols"}, "data.export", "port 445"),
        ({"export": "//bad host;rm/vols"}, "data.export", "host"),
        ({"export": "//127.0.0.1/vols\x00"}, "data.export", "control"),
        ({"options": "-o username=a,password=b,port=139"}, "data.options", "port 445"),
        ({"options": "-o username=a,password=b -v"}, "data.options", "'-o'"),
        ({"options": "-o username=a password=b"}, "data.options", "one comma list"),
        ({"options": "-o username=,password=b"}, "data.options", "username= is empty"),
        ({"options": "-o username=a,password_secret=nope"}, "data.options", "not a uuid"),
        ({"password": "Pass-word-2"}, "data.options", "again (password and options)"),
        ({"options": "-o vers=2.1"}, "data.options", "vers=3.0"),
        ({"smb_version": "1.0"}, "data.smb_version", "vers=3.0"),
        ({"options": "-o password=Lone-pass"}, "data.username", "guest"),
        ({"options": "-o username=x"}, "data.password", "guest"),
        ({"options": None, "username": "a\\b\\c", "password": "x"}, "data.username", "user name"),
        ({"options": None, "username": "D\\u", "domain": "E", "password": "p"}, "data.domain", ""),
        ({"password_secret": "not-a-uuid"}, "data.password_secret", "uuid"),
        ({"sr_uuid": "../x"}, "data.sr_uuid", "uuid"),
        ({"vdi_uuid": None}, "data.vdi_uuid", "required"),
        ({"access_mode": "rwx"}, "data.access_mode", ""),
        ({"export": ["//127.0.0.1/vols"]}, "data.export", "string"),
    ],
)
def test_hostile_input_is_refused_naming_the_field(ppool, extra, field, text):
    sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
    data = {
        "export": "//127.0.0.1/vols",
        "sr_uuid": sr_uuid,
        "vdi_uuid": vdi,
        "options": "-o username=u,password=Pass-word-1",
    }
    data.update(extra)
    data = dict((k, v) for k, v in data.items() if v is not None)
    e = refused(ppool, {"driver_volume_type": "smbfs", "data": data}, field, text, code=BAD)
    assert "Pass-word-1" not in e.message and "Lone-pass" not in e.message


def test_cinder_generic_smbfs_and_vhdx_are_refused_with_the_reason(ppool):
    e = refused(
        ppool,
        {
            "driver_volume_type": "smbfs",
            "data": {"export": "//127.0.0.1/vols", "name": "volume-1234", "format": "vhd"},
        },
        "data.sr_uuid",
        "<share>/<sr_uuid>/<vdi_uuid>.vhd",
        code="XENVOL_UNSUPPORTED_VOLUME",
    )
    assert "smbfs" in e.message
    refused(
        ppool,
        {
            "driver_volume_type": "smbfs",
            "data": {"export": "//127.0.0.1/vols", "name": "volume-1234", "format": "vhdx"},
        },
        "data.format",
        "vhdx",
        code="XENVOL_UNSUPPORTED_VOLUME",
    )
