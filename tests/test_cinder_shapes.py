"""Issue 21: connection_info documents as Cinder drivers write them, each through the client and
by hand (host.call_plugin and `xe host-call-plugin`, the JSON as one line and pretty-printed):
the same code, field and message on every path, no secret value in any answer or dom0 log (nor,
through the client, in dom0's argv), and the pool unchanged after a refusal."""

import glob
import json
import os
import subprocess
import sys
import uuid
import xmlrpc.client

import pytest
import XenAPI

import xenvol
from conftest import PluginError, state
from drivercheck import placed
from test_plugin_fc import T1, T2
from xenvol import errors

XE = os.path.join(os.path.dirname(sys.executable), "xapisim-xe")
BAD = "XENVOL_INVALID_CONNECTION_INFO"
UNSUPPORTED = "XENVOL_UNSUPPORTED_VOLUME"
TYPE = "connection_info.driver_volume_type"
LAYOUTS = [None, 2]  # one line, pretty-printed


def dom0_logs(pool):
    return "\n".join(
        open(p, errors="replace").read()
        for h in pool.sim.hosts
        for p in glob.glob(os.path.join(h.root, "var/log/*"))
        if os.path.isfile(p)
    )


def by_hand(xapi, host, info, indent, **args):
    """host.call_plugin with connection_info as a caller types it: (result, error)."""
    wire = dict(args, connection_info=json.dumps(info, indent=indent))
    try:
        return json.loads(xapi.host.call_plugin(host.ref, "xenvol", "attach_volume", wire)), None
    except XenAPI.Failure as f:
        return None, PluginError(f.details)


def by_xe(pool, host, info, indent, **args):
    """`xe host-call-plugin … args:connection_info="$(cat vol.json)"`: (rc, stdout, stderr)."""
    env = dict(os.environ, XAPISIM_URL=pool.url, XAPISIM_PASSWORD=pool.info["password"])
    argv = [XE, "host-call-plugin", "host-uuid=" + host.uuid, "plugin=xenvol", "fn=attach_volume"]
    argv += ["args:%s=%s" % kv for kv in sorted(args.items())]
    argv.append("args:connection_info=" + json.dumps(info, indent=indent))
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def refused_everywhere(pool, info, code, field, secrets=(), same_message=True):
    """The refusal of every path; returns the message of the by-hand one."""
    xapi = pool.session().xenapi
    _ref, vm_uuid, host = placed(pool, xapi, "vm-1")
    before = state(pool)
    said, messages = [], []
    for indent in LAYOUTS:
        out, e = by_hand(xapi, host, info, indent, vm_uuid=vm_uuid)
        assert e is not None, out
        assert (e.code, e.details.get("field")) == (code, field), e.message
        assert e.message.startswith(field + ": "), e.message
        messages.append(e.message)
        said.append(e.message + json.dumps(e.details))
        rc, out, err = by_xe(pool, host, info, indent, vm_uuid=vm_uuid)
        assert rc == 1 and out == "", err
        assert err.startswith("Error code: %s\nError parameters: %s: " % (code, field)), err
        said.append(err)
        assert state(pool) == before
    seen = len(pool.admin.plugin_argv())
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        with pytest.raises(errors.XenvolError) as raised:
            c.attach(info, "vm-1")
    e = raised.value
    assert (e.code, e.field) == (code, field), e.message
    said.append(str(e) + json.dumps(e.details))
    if same_message:
        assert set(messages) == {e.message}, (messages, e.message)
    assert state(pool) == before and xapi.secret.get_all() == []
    text = "\n".join(said) + dom0_logs(pool)
    argv = json.dumps(pool.admin.plugin_argv()[seen:])
    for secret in secrets:
        assert secret not in text
        assert secret not in argv  # the client's call carried only secrets' uuids
    return messages[0]


# ---------------------------------------------------------------------- 1: secrets in fields
VZ_PASSWORD = "Vz-Pass-4471"


def vzstorage(**data):
    d = {
        "export": "10.0.0.1,10.0.0.2:/cluster1:" + VZ_PASSWORD,
        "format": "qcow2",
        "name": "volume-6c2f0d2e.qcow2",
        "options": None,
    }
    d.update(data)
    return {"driver_volume_type": "vzstorage", "data": d}


def test_virtuozzo_refusal_never_echoes_the_password(ppool):
    message = refused_everywhere(ppool, vzstorage(), UNSUPPORTED, TYPE, [VZ_PASSWORD])
    assert "Virtuozzo" in message


def test_virtuozzo_unusable_values_are_still_unsupported(ppool):
    """Unsupported before any field is judged: a control character or a password the SR
    could never take changes nothing."""
    for info in (
        vzstorage(export="cluster1:" + VZ_PASSWORD + "\n"),
        vzstorage(export="cluster1:" + "p" * 300),
        vzstorage(extra={"a\u0001": 1}),
    ):
        refused_everywhere(ppool, info, UNSUPPORTED, TYPE, [VZ_PASSWORD])


ECHO_DRIVER = """from xenvol_dom0.drivers.base import Driver


class VzEcho(Driver):
    volume_types = ("vzstorage",)
    sr_type = "vz"

    def validate(self, d):
        export = d.string("export")
        raise d.bad("export", "cannot reach cluster %r through %s" % (export, export))
"""


def test_a_served_type_echoing_a_password_is_scrubbed(ppool):
    """A drop-in driver that repeats its export in an error: the password in it is blanked as
    a whole token, in the answer and the log, by hand; the client never sends it."""
    for h in ppool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/drivers.d/vzecho.py"), "w") as fh:
            fh.write(ECHO_DRIVER)
    message = refused_everywhere(
        ppool, vzstorage(), BAD, "data.export", [VZ_PASSWORD], same_message=False
    )
    assert "cluster1:***'" in message and message.endswith("cluster1:***")


def test_a_bad_password_inside_an_export_reads_the_same_on_every_path(ppool):
    """A served type: the client cuts the password out into a secret, the plugin judges that
    secret as it judges the clear value by hand."""
    info = {
        "driver_volume_type": "nfs",
        "data": {
            "export": "nfsuser:%s@192.0.2.1:/srv" % ("P" * 300),
            "sr_uuid": str(uuid.uuid4()),
            "vdi_uuid": str(uuid.uuid4()),
        },
    }
    message = refused_everywhere(ppool, info, BAD, "data.export", ["P" * 300])
    assert message == "data.export: the password in it is too long (300 characters, at most 256)"


def test_a_password_option_nfs_cannot_take_reads_the_same_on_every_path(ppool):
    info = {
        "driver_volume_type": "nfs",
        "data": {
            "server": "192.0.2.1",
            "serverpath": "/srv",
            "options": "-o vers=4.1,password=Nfs-Opt-Pass-3",
            "sr_uuid": str(uuid.uuid4()),
            "vdi_uuid": str(uuid.uuid4()),
        },
    }
    message = refused_everywhere(ppool, info, BAD, "data.options", ["Nfs-Opt-Pass-3"])
    assert message.startswith("data.options: 'password' is not an allowed mount option")


# ---------------------------------------------------------------- 2: SMB, credentials in options
SMB_PASSWORD = "Smb-Opt-Pass-5512"


def smbfs(fmt, **data):
    d = {
        "export": "//127.0.0.1/vols",
        "name": "volume-1d4f.%s" % fmt,
        "format": fmt,
        "options": "-o username=svc-xenvol,password=%s" % SMB_PASSWORD,
    }
    d.update(data)
    return {"driver_volume_type": "smbfs", "data": d}


@pytest.mark.parametrize("fmt", ["qcow2", "vhdx"])
@pytest.mark.parametrize(
    "options",
    ["-o username=svc-xenvol,password=%s", "-o user=svc-xenvol,pass=%s,domain=EXAMPLE"],
    ids=["password", "pass"],
)
def test_smb_options_credentials_and_another_format_are_unsupported(ppool, fmt, options):
    info = smbfs(fmt, options=options % SMB_PASSWORD)
    message = refused_everywhere(ppool, info, UNSUPPORTED, "data.format", [SMB_PASSWORD])
    assert "a %s volume cannot be attached" % fmt in message


def test_smb_format_is_judged_before_a_bad_password(ppool):
    info = smbfs("vhdx", options="-o username=u,password=" + "p" * 300)
    refused_everywhere(ppool, info, UNSUPPORTED, "data.format")


def test_smb_options_password_problem_reads_the_same_on_every_path(ppool):
    info = smbfs("vhd", sr_uuid=str(uuid.uuid4()), vdi_uuid=str(uuid.uuid4()))
    info["data"]["options"] = "-o username=u,password=" + "p" * 300
    message = refused_everywhere(ppool, info, BAD, "data.options")
    assert message == "data.options: password= is too long (300 characters, at most 256)"


@pytest.fixture
def smb_volume(ppool, peers):
    """(connection_info, sr_uuid, vdi_uuid) of a VHD laid out as the SMB SR serves it, with
    the credentials and other mount options in Cinder's `options`."""
    from test_sim_smb import vhd

    peers.smb  # noqa: B018 (the property starts smbd, or skips)
    sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
    os.makedirs(os.path.join(peers.smb_share, sr_uuid))
    vhd(os.path.join(peers.smb_share, sr_uuid), vdi, 16 << 20)
    info = smbfs("vhd", sr_uuid=sr_uuid, vdi_uuid=vdi)
    info["data"]["options"] = (
        "-o username=%s,password=%s,noperm,file_mode=0777 -o vers=3.0,guest"
        % (
            peers.SMB_USER,
            peers.SMB_PASSWORD,
        )
    )
    return info, sr_uuid, vdi


def _check_smb_attached(xapi, peers, out, sr_uuid):
    assert out["sr_uuid"] == sr_uuid
    ignored = sorted(i["reason"].split("'")[1] for i in out["ignored"])
    assert ignored == ["file_mode", "guest", "noperm"], out["ignored"]
    assert all(i["field"] == "data.options" for i in out["ignored"])
    sr = xapi.SR.get_by_uuid(sr_uuid)
    for pbd in xapi.SR.get_PBDs(sr):
        dconf = xapi.PBD.get_device_config(pbd)
        assert dconf["username"] == peers.SMB_USER and "password" not in dconf
        assert "options" not in dconf  # SMBSR takes none: getMountOptions is fixed
        secret = xapi.secret.get_by_uuid(dconf["password_secret"])
        assert xapi.secret.get_value(secret) == peers.SMB_PASSWORD


def test_smb_vhd_with_credentials_in_options_attaches_by_hand(ppool, peers, smb_volume):
    info, sr_uuid, _vdi = smb_volume
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    for indent in LAYOUTS:
        out, e = by_hand(xapi, host, info, indent, vm_uuid=vm_uuid)
        assert e is None, e
        _check_smb_attached(xapi, peers, out, sr_uuid)
        xapi.host.call_plugin(host.ref, "xenvol", "detach_volume", {"vbd_uuid": out["vbd_uuid"]})
        assert state(ppool) == before
        rc, stdout, err = by_xe(ppool, host, info, indent, vm_uuid=vm_uuid)
        assert rc == 0, err
        out = json.loads(stdout)
        _check_smb_attached(xapi, peers, out, sr_uuid)
        xapi.host.call_plugin(host.ref, "xenvol", "detach_volume", {"vbd_uuid": out["vbd_uuid"]})
        assert state(ppool) == before
    assert peers.SMB_PASSWORD not in dom0_logs(ppool)


def test_smb_vhd_with_credentials_in_options_attaches_through_the_client(ppool, peers, smb_volume):
    info, sr_uuid, _vdi = smb_volume
    xapi = ppool.session().xenapi
    before = state(ppool)
    seen = len(ppool.admin.plugin_argv())
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
        att = c.attach(info, "vm-1")
        # a frozen record: each ignored entry is a tuple of (key, value) pairs
        out = {"sr_uuid": att.sr_uuid, "ignored": [dict(i) for i in att.ignored]}
        _check_smb_attached(xapi, peers, out, sr_uuid)
        c.detach(attachment=att)
    assert state(ppool) == before and xapi.secret.get_all() == []
    said = json.dumps(ppool.admin.plugin_argv()[seen:]) + dom0_logs(ppool)
    assert peers.SMB_PASSWORD not in said


# ---------------------------------------------------------------------- 3, 4: Fibre Channel
T3, T4 = "21:00:00:24:ff:7a:00:03", "21000024ff7a0004"


def fc(**data):
    d = {"target_discovered": True, "access_mode": "rw"}
    d.update(data)
    return {"driver_volume_type": "fibre_channel", "data": d}


def fc_volume(pool, ports):
    """One volume seen as [(target port, LUN)] (peer persistence: two arrays, the same disk
    under a LUN of each), zoned to every host."""
    scsi_id = "3600a0980%s" % uuid.uuid4().hex[:20]
    fabric = pool.admin.fc_fabric()
    for target, number in ports:
        pool.admin.fc_lun(target, number, scsi_id, str(1 << 30))
        for wwpns in fabric.values():
            for wwpn in wwpns:
                pool.admin.fc_zone(wwpn, target)
    return scsi_id


def attached_everywhere(pool, info, scsi_id):
    """Attach and detach by hand (both layouts) and through the client: the LUN is found."""
    xapi = pool.session().xenapi
    _ref, vm_uuid, host = placed(pool, xapi, "vm-1")
    before = state(pool)
    for indent in LAYOUTS:
        out, e = by_hand(xapi, host, info, indent, vm_uuid=vm_uuid)
        assert e is None, e.message
        vdi = xapi.VDI.get_by_uuid(out["vdi_uuid"])
        assert xapi.VDI.get_sm_config(vdi)["SCSIid"] == scsi_id
        xapi.host.call_plugin(host.ref, "xenvol", "detach_volume", {"vbd_uuid": out["vbd_uuid"]})
        assert state(pool) == before
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        att = c.attach(info, "vm-1")
        assert xapi.VDI.get_sm_config(xapi.VDI.get_by_uuid(att.vdi_uuid))["SCSIid"] == scsi_id
        c.detach(attachment=att)
    assert state(pool) == before


def test_fc_peer_persistence_lists_one_lun_per_port(ppool):
    """HPE 3PAR/Alletra peer persistence: target_wwn lists both arrays' ports, target_luns
    one LUN per port, no target_lun (cinder hpe_3par_fc.py initialize_connection)."""
    scsi_id = fc_volume(ppool, [(T1, 5), (T2, 5), (T3, 7), (T4, 7)])
    info = fc(target_wwn=[T1, T2, T3, T4], target_luns=[5, 5, 7, 7])
    attached_everywhere(ppool, info, scsi_id)


def test_fc_stretched_pod_with_every_key(ppool):
    """Pure's stretched pod: target_wwn and target_wwns alike, target_lun beside target_luns
    (cinder pure.py _build_connection_properties), and keys xenvol does not use."""
    scsi_id = fc_volume(ppool, [(T1, 9), (T3, 12)])
    info = fc(
        target_wwn=[T1, T3],
        target_wwns=[T1, T3],
        target_lun=9,
        target_luns=[9, 12],
        addressing_mode="SAM2",
        wwn="3624a9370" + "0" * 16,
    )
    attached_everywhere(ppool, info, scsi_id)


def test_fc_one_lun_for_several_ports(ppool):
    """os-brick's old path: one LUN in target_luns for every WWN."""
    scsi_id = fc_volume(ppool, [(T1, 3), (T2, 3)])
    attached_everywhere(ppool, fc(target_wwns=[T1, T2], target_luns=[3]), scsi_id)


@pytest.mark.parametrize(
    "data,field",
    [
        ({"target_wwn": [T1, T2, T3], "target_luns": [1, 2]}, "data.target_luns"),
        ({"target_wwns": [T1, T2], "target_luns": [1, 2, 3]}, "data.target_luns"),
        ({"target_wwn": [T1, T1], "target_luns": [1, 2]}, "data.target_luns"),
        ({"target_wwn": [T1, T2], "target_luns": [1, 2], "target_lun": 4}, "data.target_lun"),
        ({"target_wwn": [T1], "target_wwns": [T2], "target_lun": 1}, "data.target_wwn"),
        ({"target_wwn": [T1, T2], "target_luns": [1, "x"]}, "data.target_luns[1]"),
        ({"target_wwn": [T1, T2], "target_luns": {"a": 1}}, "data.target_luns"),
        ({"target_wwn": [T1, T2]}, "data.target_lun"),
        ({"target_luns": [1]}, "data.target_wwn"),
    ],
)
def test_fc_inconsistent_lists_are_refused_naming_the_field(ppool, data, field):
    refused_everywhere(ppool, fc(**data), BAD, field)


@pytest.mark.parametrize("value", ["abc", "1; reboot", "\u00b2", "0x10", "1 2", "-1"])
def test_fc_non_numeric_target_lun_is_refused_before_any_change(ppool, value):
    refused_everywhere(ppool, fc(target_wwn=T1, target_lun=value), BAD, "data.target_lun")
    # also where target_luns decides the paths and target_lun is the compatibility copy
    info = fc(target_wwns=[T1, T2], target_luns=[1, 1], target_lun=value)
    refused_everywhere(ppool, info, BAD, "data.target_lun")


# ---------------------------------------------------------------------- 5: very long strings
LONG = 40 * 1024


@pytest.mark.parametrize(
    "data,field",
    [
        ({"target_iqn": "iqn.2026-11.org.example:" + "a" * LONG}, "data.target_iqn"),
        ({"target_portal": "192.0.2.1" + "1" * LONG + ":3260"}, "data.target_portal"),
        ({"target_portal": "h" * LONG + ".example:3260"}, "data.target_portal"),
        ({"target_lun": "1" * LONG}, "data.target_lun"),
        ({"volume_id": "v" * LONG}, "data.volume_id"),
        (
            {"auth_method": "CHAP", "auth_username": "u" * LONG, "auth_password": "Chap-Long-1"},
            "data.auth_username",
        ),
    ],
)
def test_long_strings_are_refused_naming_the_field(ppool, data, field):
    d = {
        "target_portal": "192.0.2.1:3260",
        "target_iqn": "iqn.2026-11.org.example:t",
        "target_lun": 1,
    }
    d.update(data)
    refused_everywhere(
        ppool, {"driver_volume_type": "iscsi", "data": d}, BAD, field, ["Chap-Long-1"]
    )


def test_a_document_over_the_limit_is_refused_on_both_paths(ppool):
    """Over 64 KiB (what xenvol takes, well under what reaches dom0's command line): the
    plugin's XENVOL_INVALID_ARGUMENT by hand, the same from the client, which never sends it."""
    info = fc(target_wwn=T1, target_lun=1, volume_id="v" * (70 * 1024))
    message = refused_everywhere(
        ppool, info, "XENVOL_INVALID_ARGUMENT", "connection_info", same_message=False
    )
    assert "is too large" in message


def test_another_long_argument_by_hand(ppool):
    xapi = ppool.session().xenapi
    _ref, _vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    out, e = by_hand(xapi, host, fc(target_wwn=T1, target_lun=1), None, vm="x" * LONG)
    assert (e.code, e.details["field"]) == ("XENVOL_INVALID_ARGUMENT", "vm"), e.message
    assert state(ppool) == before


def test_what_xapi_refuses_before_the_plugin_runs(ppool):
    """Beyond dom0's argv limit (128 KiB per argument, the call XML-escaped) the plugin is never
    exec'd: xapi answers XENAPI_PLUGIN_FAILURE "non-zero exit" (vfork_helper's exit 126). Over
    300 KiB xapi refuses the request itself (Http_svr.read_body: HTTP 500, no XAPI error).
    The client refuses both before sending, with the plugin's own code."""
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    for size, seen in ((150 * 1024, "exec"), (310 * 1024, "http")):
        info = fc(target_wwn=T1, target_lun=1, volume_id="v" * size)
        if seen == "exec":
            out, e = by_hand(xapi, host, info, None, vm_uuid=vm_uuid)
            assert (e.code, e.message) == ("XENAPI_PLUGIN_FAILURE", "non-zero exit"), e.message
        else:
            with pytest.raises(xmlrpc.client.ProtocolError) as http:
                by_hand(xapi, host, info, None, vm_uuid=vm_uuid)
            assert http.value.errcode == 500
        with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
            with pytest.raises(errors.InvalidArgument) as local:
                c.attach(info, "vm-1")
        assert (local.value.code, local.value.field) == (
            "XENVOL_INVALID_ARGUMENT",
            "connection_info",
        )
        assert state(ppool) == before


# ---------------------------------------------------------------------- 6: rbd
KEY = "AQBqKcRlYmV4HhAAf0hQn2OQ4Qm1bJp4Z2cxyA=="


def rbd(**data):
    d = {
        "name": "volumes/volume-7a4b",
        "hosts": ["10.0.0.1", "10.0.0.2"],
        "ports": ["6789", "6789"],
        "cluster_name": "ceph",
        "auth_enabled": True,
        "auth_username": "cinder",
        "secret_type": "ceph",
        "secret_uuid": "457eb676-33da-42ec-9a8c-9293d545c337",
        "volume_id": "7a4b",
        "discard": True,
    }
    d.update(data)
    return {"driver_volume_type": "rbd", "data": d}


@pytest.mark.parametrize(
    "data",
    [
        {"keyring": KEY},
        # cinder rbd.py initialize_connection with keyring_data (cinderlib): the file's text
        {"keyring": "[client.cinder]\n\tkey = %s\n" % KEY},
        {
            "keyring": "[client.cinder]\n\tkey = %s\n" % KEY,
            "conf": "/etc/ceph/ceph.conf",
            "user": "cinder",
            "pool": "volumes",
            "access_mode": "rwx",
        },
    ],
    ids=["keyring", "cinderlib-keyring", "cinderlib-fields"],
)
def test_rbd_is_unsupported_before_its_fields_are_judged(ppool, data):
    message = refused_everywhere(ppool, rbd(**data), UNSUPPORTED, TYPE, [KEY])
    assert "Ceph RBD" in message and "drivers.d" in message
