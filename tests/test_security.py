"""Issue 11: the four holes as regression tests, secrets on every path, and the policies, through
the real path (XenAPI -> simulator -> exec'd plugin -> real iSCSI target)."""

import json
import os
import uuid

import pytest

import xenvol
from conftest import FAST_SETTINGS, PluginError, plugin, state
from test_client import everything_said
from test_plugin_iscsi import CHAP, ci, placed
from xenvol import errors


def configure(pool, **settings):
    for h in pool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(dict(FAST_SETTINGS, **settings), fh)


def refused(xapi, host, fn, code, field, **args):
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, fn, **args)
    assert (e.value.code, e.value.details.get("field")) == (code, field), e.value.message
    return e.value


# ---------------------------------------------------------------------- hole 1: xensm
def test_xensm_cannot_take_another_vms_disk_or_a_foreign_sr(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    other = xapi.VM.get_by_name_label("vm-2")[0]
    root_vbd = [v for v in xapi.VM.get_VBDs(other) if xapi.VBD.get_type(v) == "Disk"][0]
    root_vdi = xapi.VBD.get_VDI(root_vbd)
    local = xapi.VDI.get_SR(root_vdi)
    before = state(ppool)
    info = {
        "driver_volume_type": "xensm",
        "data": {
            "sr_uuid": xapi.SR.get_uuid(local),
            "sr_type": xapi.SR.get_type(local),
            "vdi_uuid": xapi.VDI.get_uuid(root_vdi),
        },
    }
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "data.sr_type",
        connection_info=info,
        vm_uuid=vm_uuid,
    )
    # the operator allowing the SR does not make another VM's disk a volume
    configure(
        ppool,
        allowed_sr_uuids=[xapi.SR.get_uuid(local)],
        allowed_sr_types=[xapi.SR.get_type(local)],
    )
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "connection_info",
        connection_info=info,
        vm_uuid=vm_uuid,
    )
    assert state(ppool) == before


@pytest.mark.slow
def test_a_named_sr_xenvol_did_not_introduce_is_refused_unless_allowed(ppool):
    xapi = ppool.session().xenapi
    sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
    ppool.admin.put_vdi(sr_uuid, vdi, {})
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    sr = xapi.SR.introduce(sr_uuid, "admin's", "", "cephfs", "", True, {})
    before = state(ppool)
    info = {
        "driver_volume_type": "xensm",
        "data": {"sr_uuid": sr_uuid, "sr_type": "cephfs", "vdi_uuid": vdi},
    }
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "data.sr_uuid",
        connection_info=info,
        vm_uuid=vm_uuid,
    )
    assert state(ppool) == before
    configure(ppool, allowed_sr_uuids=[sr_uuid])
    pbd = xapi.PBD.create(
        {
            "host": host.ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"server": "mon1", "serverpath": "/vols"},
        }
    )
    xapi.PBD.plug(pbd)
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert xapi.SR.get_uuid(sr) == sr_uuid  # never forgotten: not ours


# ---------------------------------------------------------------------- hole 2: dom0
def test_control_domains_and_templates_are_never_targets(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    host = ppool.host(0)
    before = state(ppool)
    dom0 = [
        r
        for r, rec in xapi.VM.get_all_records().items()
        if rec["is_control_domain"] and rec["resident_on"] == host.ref
    ][0]
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "vm_uuid",
        connection_info=ci(peers, iqn),
        vm_uuid=xapi.VM.get_uuid(dom0),
    )
    with pytest.raises(errors.VMNotFound):
        with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
            c.attach(
                ci(peers, iqn), "Control domain on host: %s" % xapi.host.get_name_label(host.ref)
            )
    assert state(ppool) == before


# ---------------------------------------------------------------------- hole 3: CHAP
def test_chap_is_checked_on_every_attach_of_a_plugged_target(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1, 2), chap=CHAP)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    first = plugin(
        xapi, host, "attach_volume", connection_info=ci(peers, iqn, 1, chap=CHAP), vm_uuid=vm_uuid
    )
    before = state(ppool)
    wrong = xapi.secret.create({"value": "Not-The-Secret-1", "other_config": {}})
    for info in (
        ci(peers, iqn, 2, chap=(CHAP[0], "Wrong-Password-1")),
        ci(peers, iqn, 2),  # no CHAP at all
        ci(peers, iqn, 2, chap=("someone-else", CHAP[1])),
        ci(peers, iqn, 2, chap=CHAP, secret_uuid=xapi.secret.get_uuid(wrong)),
    ):
        e = refused(
            xapi,
            host,
            "attach_volume",
            "XENVOL_AUTH_MISMATCH",
            "data.auth_username",
            connection_info=info,
            vm_uuid=vm_uuid,
        )
        assert "Wrong-Password-1" not in e.message and "Not-The-Secret-1" not in e.message
    xapi.secret.destroy(wrong)
    assert state(ppool) == before
    second = plugin(
        xapi, host, "attach_volume", connection_info=ci(peers, iqn, 2, chap=CHAP), vm_uuid=vm_uuid
    )
    for out in (first, second):
        plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    log = open(os.path.join(host.root, "var/log/xenvol.log")).read()
    assert "Wrong-Password-1" not in log and CHAP[1] not in log


# ---------------------------------------------------------------------- hole 4: file
@pytest.mark.slow
def test_file_driver_serves_only_operator_roots(ppool):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    vdi = str(uuid.uuid4())
    root = os.path.join(host.root, "var/lib/xenvol/volumes")
    os.makedirs(root)
    os.symlink("/etc", os.path.join(root, "escape"))
    sr_mount = os.path.join(host.root, "var/run/sr-mount", str(uuid.uuid4()))
    os.makedirs(sr_mount)
    with open(os.path.join(sr_mount, vdi + ".raw"), "wb") as fh:
        fh.truncate(1 << 20)
    before = state(ppool)
    for path in (
        "/",
        "/etc",
        "/var/lib/xcp",
        "/var/lib/xenvol/volumes/escape",
        "/var/lib/xenvol",
        sr_mount[len(host.root) :],
        "/tmp",
    ):
        e = refused(
            xapi,
            host,
            "attach_volume",
            "XENVOL_POLICY_REFUSED",
            "data.path",
            connection_info={"driver_volume_type": "file", "data": {"path": path, "vdi_uuid": vdi}},
            vm_uuid=vm_uuid,
        )
        assert "/" not in e.message.split(":", 1)[1]  # no dom0 path in the error
    # an operator root cannot open a system directory either
    configure(ppool, file_roots=["/"])
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "data.path",
        connection_info={
            "driver_volume_type": "file",
            "data": {"path": sr_mount[len(host.root) :], "vdi_uuid": vdi},
        },
        vm_uuid=vm_uuid,
    )
    assert state(ppool) == before
    assert ppool.admin.counts().get("SR.introduce") is None


# ---------------------------------------------------------------------- secrets
def test_bad_passwords_are_refused_naming_the_field_given(ppool, peers):
    """The plugin judges the secret the client made as the clear value (a non-string no
    secret can hold is refused by the client, in the same words); no secret is left."""
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
        for bad in ("line\ninjection", "tab\there", "x" * 300, "sep\u2028x", "c\x01", 12345):
            with pytest.raises(errors.InvalidConnectionInfo) as e:
                c.attach(ci(peers, iqn, chap=(CHAP[0], bad)), "vm-1")
            assert (e.value.code, e.value.field) == (
                "XENVOL_INVALID_CONNECTION_INFO",
                "data.auth_password",
            )
            by_hand = refused(
                xapi,
                host,
                "attach_volume",
                "XENVOL_INVALID_CONNECTION_INFO",
                "data.auth_password",
                vm_uuid=vm_uuid,
                connection_info=ci(peers, iqn, chap=(CHAP[0], bad)),
            )
            assert by_hand.message == e.value.message
    assert state(ppool) == before and xapi.secret.get_all() == []


def test_plugin_checks_the_values_of_given_secrets(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    bad = xapi.secret.create({"value": "Chap-Pass\nnode.session.x = y", "other_config": {}})
    before = state(ppool)
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_password_secret",
        vm_uuid=vm_uuid,
        connection_info=ci(peers, iqn, chap=CHAP, secret_uuid=xapi.secret.get_uuid(bad)),
    )
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_password_secret",
        vm_uuid=vm_uuid,
        connection_info=ci(peers, iqn, chap=CHAP, secret_uuid=str(uuid.uuid4())),
    )
    assert state(ppool) == before


def test_every_secret_bearing_value_leaves_argv(ppool, peers):
    """Flat attachments-API shape, a keyring, password= in options, a password in an export:
    the client turns each into a XAPI secret; the plugin refuses what it cannot use."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    flat = dict(
        ci(peers, iqn, chap=CHAP)["data"],
        driver_volume_type="iscsi",
        attachment_id=str(uuid.uuid4()),
    )
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
        att = c.attach(flat, "vm-1")
        assert att.plugged
        c.detach(attachment=att)
        sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
        for data in (
            {"keyring": "Ceph-Keyring-Value-9"},
            {"options": "-o vers=4.1,password=Opt-Password-9"},
            {"export": "nfsuser:Export-Password-9@127.0.0.1:/srv"},
        ):
            data.update(sr_uuid=sr_uuid, vdi_uuid=vdi, server="127.0.0.1", serverpath="/srv")
            if "export" in data:
                del data["server"], data["serverpath"]
            with pytest.raises(errors.InvalidInput) as e:
                c.attach({"driver_volume_type": "nfs", "data": data}, "vm-1")
            assert "Password-9" not in str(e.value) and "Keyring-Value" not in str(e.value)
    said = everything_said(ppool)
    for secret in (CHAP[1], "Ceph-Keyring-Value-9", "Opt-Password-9", "Export-Password-9"):
        assert secret not in said
    assert state(ppool) == before


def test_a_xapi_error_echoing_a_secret_is_scrubbed_in_the_log(ppool, peers):
    """The plugin learns a given secret's value, so a XAPI error that echoes it (here the
    storage refusing a login) is scrubbed on the client path too."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
        with pytest.raises(errors.BackendFailure):
            c.attach(ci(peers, iqn, chap=(CHAP[0], "plug")), "vm-1")
    log = open(os.path.join(ppool.host(0).root, "var/log/xenvol.log")).read()
    assert "plugging" in log or "plug" in log  # ordinary words are intact
    assert "***lugging" not in log


# ---------------------------------------------------------------------- policies
def test_encrypted_volumes_are_refused_unless_allowed(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    refused(
        xapi,
        host,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "data.encrypted",
        connection_info=ci(peers, iqn, encrypted=True),
        vm_uuid=vm_uuid,
    )
    assert state(ppool) == before
    configure(ppool, allow_encrypted=True)
    out = plugin(
        xapi,
        host,
        "attach_volume",
        vm_uuid=vm_uuid,
        connection_info=ci(
            peers, iqn, encrypted=True, discard=True, qos_specs={"total_iops_sec": "500"}
        ),
    )
    assert sorted(i["field"] for i in out["ignored"]) == [
        "data.discard",
        "data.encrypted",
        "data.qos_specs.total_iops_sec",
    ]
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(ppool) == before


def test_read_write_twice_needs_multiattach(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    _r1, vm1, host1 = placed(ppool, xapi, "vm-1")
    _r2, vm2, host2 = placed(ppool, xapi, "vm-3")
    first = plugin(xapi, host1, "attach_volume", connection_info=ci(peers, iqn), vm_uuid=vm1)
    before = state(ppool)
    refused(
        xapi,
        host2,
        "attach_volume",
        "XENVOL_POLICY_REFUSED",
        "mode",
        connection_info=ci(peers, iqn),
        vm_uuid=vm2,
    )
    assert state(ppool) == before
    # our policy lets ro through; XAPI then plugs it only if the VDI is sharable
    ro = plugin(
        xapi,
        host2,
        "attach_volume",
        connection_info=ci(peers, iqn),
        vm_uuid=vm2,
        mode="ro",
        hotplug="false",
    )
    assert ro["mode"] == "ro"
    plugin(xapi, host2, "detach_volume", vbd_uuid=ro["vbd_uuid"])
    multi = dict(ci(peers, iqn), multiattach=True)
    out = plugin(xapi, host2, "attach_volume", connection_info=multi, vm_uuid=vm2, hotplug="false")
    assert out["mode"] == "rw"
    for o, h in ((out, host2), (first, host1)):
        plugin(xapi, h, "detach_volume", vbd_uuid=o["vbd_uuid"])


def test_unusable_multipath_paths_are_reported(ppool, peers):
    xapi = ppool.session().xenapi
    iqn = peers.new_target(luns=(1,))
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = ci(
        peers,
        iqn,
        target_portals=[peers.iscsi.portal, "192.0.2.9:3260"],
        target_iqns=[iqn, "iqn.2026-11.org.example:other"],
        target_luns=[1, 1],
    )
    del info["data"]["target_portal"]
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert [i["field"] for i in out["ignored"]] == ["data.target_portals[1]"]
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
