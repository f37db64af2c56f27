"""Malformed input gets a clear error naming the field, and changes nothing."""

import json

import pytest

from conftest import PluginError, plugin, state

GOOD = {
    "target_portal": "127.0.0.1:3260",
    "target_iqn": "iqn.2026-11.org.example:t1",
    "target_lun": 1,
}


def iscsi(**changes):
    data = dict(GOOD)
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return {"driver_volume_type": "iscsi", "data": data}


CASES = [
    # (connection_info, expected code, expected field)
    (iscsi(target_portal=None), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_iqn=None), "XENVOL_INVALID_CONNECTION_INFO", "data.target_iqn"),
    (iscsi(target_lun=None), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun=-1), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun="-3"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun="1; reboot"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun=True), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun=1.5), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_lun=99999), "XENVOL_INVALID_CONNECTION_INFO", "data.target_lun"),
    (iscsi(target_portal=3260), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="127.0.0.1:0"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (
        iscsi(target_portal="127.0.0.1:70000"),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.target_portal",
    ),
    (iscsi(target_portal="$(reboot):3260"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="host;rm -rf /"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="[::1:3260"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="[zz::1]:3260"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="a" * 5000), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_iqn="iqn`id`"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_iqn"),
    (iscsi(target_iqn="not an iqn"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_iqn"),
    (
        iscsi(target_iqn=["iqn.2026-11.org.example:t1"]),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.target_iqn",
    ),
    (iscsi(auth_method="CHAP"), "XENVOL_INVALID_CONNECTION_INFO", "data.auth_username"),
    (
        iscsi(auth_method="CHAP", auth_username="u"),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_password",
    ),
    (iscsi(auth_method="KERBEROS"), "XENVOL_INVALID_CONNECTION_INFO", "data.auth_method"),
    (
        iscsi(
            auth_method="CHAP",
            auth_username="u",
            auth_password="pw-123456",
            auth_password_secret="not-a-uuid",
        ),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_password_secret",
    ),
    (
        iscsi(
            auth_method="CHAP",
            auth_username="u",
            auth_password="pw-123456",
            discovery_auth_method="CHAP",
            discovery_auth_username="d",
            discovery_auth_password="pw-654321",
        ),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.discovery_auth_username",
    ),
    (iscsi(access_mode="rwx"), "XENVOL_INVALID_CONNECTION_INFO", "data.access_mode"),
    (
        iscsi(target_portals=["127.0.0.1:3260"], target_iqns=[], target_luns=[1]),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.target_iqns",
    ),
    (
        iscsi(
            target_portals=["127.0.0.1:3260", "127.0.0.2:3260"],
            target_iqns=["iqn.2026-11.org.example:t1"] * 2,
            target_luns=[1],
        ),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.target_portals",
    ),
    (
        iscsi(
            target_portals=["127.0.0.1:3260"],
            target_iqns=["iqn.2026-11.org.example:t1"],
            target_luns=["x"],
        ),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.target_luns[0]",
    ),
    ({"driver_volume_type": "iscsi"}, "XENVOL_INVALID_CONNECTION_INFO", "connection_info.data"),
    ({"driver_volume_type": "iscsi", "data": "x"}, "XENVOL_INVALID_CONNECTION_INFO", "data"),
    ({"data": GOOD}, "XENVOL_INVALID_CONNECTION_INFO", "connection_info.driver_volume_type"),
    (
        {"driver_volume_type": "acme-nosuch", "data": {}},
        "XENVOL_UNKNOWN_DRIVER",
        "connection_info.driver_volume_type",
    ),
    ([1, 2], "XENVOL_INVALID_CONNECTION_INFO", "connection_info"),
    (
        {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv/../etc",
                "sr_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab",
                "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.serverpath",
    ),
    (
        {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv",
                "sr_uuid": "../../etc",
                "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.sr_uuid",
    ),
    (
        {
            "driver_volume_type": "nfs",
            "data": {
                "server": "127.0.0.1",
                "serverpath": "/srv",
                "options": "vers=3;touch /tmp/x",
                "sr_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab",
                "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.options",
    ),
    (
        {
            "driver_volume_type": "file",
            "data": {"path": "var/lib", "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac"},
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.path",
    ),
    (
        {
            "driver_volume_type": "file",
            "data": {"path": "/var/../../etc", "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac"},
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.path",
    ),
    (
        {
            "driver_volume_type": "xensm",
            "data": {
                "sr_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab",
                "sr_type": "nfs; reboot",
                "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.sr_type",
    ),
    (
        {
            "driver_volume_type": "xensm",
            "data": {
                "sr_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab",
                "sr_type": "nfs",
                "introduce_sr_keys": ["server"],
                "vdi_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.server",
    ),
]


@pytest.fixture
def target(ppool):
    xapi = ppool.session().xenapi
    ref = xapi.VM.get_by_name_label("vm-1")[0]
    host = [h for h in ppool.sim.hosts if h.ref == xapi.VM.get_resident_on(ref)][0]
    return xapi, host, xapi.VM.get_uuid(ref)


@pytest.mark.slow
def test_malformed_connection_info(ppool, target):
    xapi, host, vm_uuid = target
    before = state(ppool)
    for info, code, field in CASES:
        with pytest.raises(PluginError) as e:
            plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        assert (e.value.code, e.value.details.get("field")) == (code, field), (
            info,
            e.value.message,
        )
        assert e.value.message.startswith(field), e.value.message
        assert "Traceback" not in e.value.message
    assert state(ppool) == before
    assert ppool.admin.counts().get("SR.introduce") is None


@pytest.mark.slow
def test_bad_arguments(ppool, target):
    xapi, host, vm_uuid = target
    before = state(ppool)
    good = json.dumps(iscsi())
    cases = [
        (
            {"connection_info": "{not json", "vm_uuid": vm_uuid},
            "XENVOL_INVALID_CONNECTION_INFO",
            "connection_info",
        ),
        (
            {"connection_info": "x" * 70000, "vm_uuid": vm_uuid},
            "XENVOL_INVALID_ARGUMENT",
            "connection_info",
        ),
        ({"vm_uuid": vm_uuid}, "XENVOL_INVALID_CONNECTION_INFO", "connection_info"),
        ({"connection_info": good}, "XENVOL_INVALID_ARGUMENT", "vm_uuid"),
        ({"connection_info": good, "vm_uuid": "vm-1"}, "XENVOL_INVALID_ARGUMENT", "vm_uuid"),
        (
            {"connection_info": good, "vm_uuid": "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab"},
            "XENVOL_VM_NOT_FOUND",
            "vm_uuid",
        ),
        (
            {"connection_info": good, "vm_uuid": vm_uuid, "mountpoint": "/dev/../sda"},
            "XENVOL_INVALID_ARGUMENT",
            "mountpoint",
        ),
        (
            {"connection_info": good, "vm_uuid": vm_uuid, "mountpoint": "xvdzz"},
            "XENVOL_INVALID_ARGUMENT",
            "mountpoint",
        ),
        (
            {"connection_info": good, "vm_uuid": vm_uuid, "mode": "rwx"},
            "XENVOL_INVALID_ARGUMENT",
            "mode",
        ),
        (
            {"connection_info": good, "vm_uuid": vm_uuid, "hotplug": "maybe"},
            "XENVOL_INVALID_ARGUMENT",
            "hotplug",
        ),
        (
            {"connection_info": good, "vm_uuid": vm_uuid, "mountpont": "xvdb"},
            "XENVOL_INVALID_ARGUMENT",
            "mountpont",
        ),
        (
            {
                "connection_info": json.dumps(iscsi(access_mode="ro")),
                "vm_uuid": vm_uuid,
                "mode": "rw",
            },
            "XENVOL_INVALID_ARGUMENT",
            "mode",
        ),
    ]
    for args, code, field in cases:
        try:
            xapi.host.call_plugin(host.ref, "xenvol", "attach_volume", args)
        except Exception as f:
            err = PluginError(f.details)
        else:
            raise AssertionError("accepted %r" % args)
        assert (err.code, err.details.get("field")) == (code, field), (args, err.message)
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "detach_volume")
    assert e.value.details["field"] == "vbd_uuid"
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, "detach_volume", vm_uuid=vm_uuid, mountpoint="xvda")
    assert "not attached by xenvol" in e.value.message  # the root disk is not ours to detach
    assert state(ppool) == before


def test_mountpoints(ppool):
    import sys

    sys.path.insert(0, __import__("conftest").PLUGINS)
    from xenvol_dom0.vbd import device_name, device_number

    assert [
        device_number(m)
        for m in ("/dev/xvdb", "xvdb", "sdc", "hdd", "7", "xvdq", "/dev/xvdaa", "autodetect")
    ] == ["1", "1", "2", "3", "7", "16", "26", None]
    assert device_name("16") == "xvdq" and device_name("26") == "xvdaa"
