"""The xenvol client library against a simulated 3-host pool, through the real plugin path."""

import glob
import json
import os
import subprocess

import pytest
import XenAPI

import xenvol
from conftest import API_LEVEL, plugin_pool, state
from xenvol import errors

CHAP = ("cliuser", "Client-Chap-Secret-5")


def info(peers, iqn, lun=1, password=CHAP[1], **extra):
    data = {
        "target_portal": peers.iscsi.portal,
        "target_iqn": iqn,
        "target_lun": lun,
        "auth_method": "CHAP",
        "auth_username": CHAP[0],
        "auth_password": password,
    }
    data.update(extra)
    return {"driver_volume_type": "iscsi", "data": data}


@pytest.fixture
def client(ppool):
    c = xenvol.Client(ppool.url, "root", ppool.info["password"])
    yield c
    c.close()


def everything_said(ppool):
    """Every place a password could leak to: logs, plugin argv, PBDs, SRs."""
    text = [json.dumps(ppool.admin.plugin_argv())]
    for h in ppool.sim.hosts:
        for path in glob.glob(os.path.join(h.root, "var/log/*")):
            text.append(open(path).read())
    snap = ppool.admin.snapshot()
    text.append(json.dumps(snap["PBD"]))
    text.append(json.dumps(snap["SR"]))
    return "\n".join(text)


def test_attach_on_a_member_from_the_master_keeps_secrets_out(ppool, peers, client):
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    att = client.attach(info(peers, iqn), "vm-3", mountpoint="xvdc")
    assert isinstance(att, xenvol.Attachment)
    assert att.host_uuid == ppool.host(1).uuid and att.device == "xvdc" and att.plugged
    assert [e["host"] for e in ppool.admin.plugin_argv()][-1] == ppool.host(1).uuid
    pbd = ppool.admin.snapshot()["PBD"]
    assert any("chappassword_secret" in p["device_config"] for p in pbd.values())
    assert CHAP[1] not in everything_said(ppool)
    listed = client.attachments("vm-3")
    assert [a.vbd_uuid for a in listed] == [att.vbd_uuid]
    assert [a.vbd_uuid for a in client.attachments()] == [att.vbd_uuid]
    done = client.detach(vm="vm-3", mountpoint="/dev/xvdc")
    assert [a.vbd_uuid for a in done] == [att.vbd_uuid]
    assert client.detach(vm="vm-3", mountpoint="xvdc") == []
    assert state(ppool) == before  # no SR, PBD or secret left, the client's included


def test_a_failed_attach_leaks_no_secret(ppool, peers, client):
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    with pytest.raises(errors.VolumeNotFound) as e:
        client.attach(info(peers, iqn, lun=9), "vm-1")
    assert e.value.field == "data.target_lun" and e.value.host == ppool.host(0).uuid
    with pytest.raises(errors.BackendFailure) as e:
        client.attach(info(peers, iqn, password="Wrong-Secret-123"), "vm-1")
    assert e.value.sm_code == "68"
    for exc in (e.value,):
        assert "Wrong-Secret-123" not in str(exc) + json.dumps(exc.details)
    assert state(ppool) == before
    said = everything_said(ppool)
    assert CHAP[1] not in said and "Wrong-Secret-123" not in said


def test_redirect_from_a_member_to_the_master(ppool, peers):
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    member = ppool.info["member_urls"][1]
    with xenvol.Client(member, "root", ppool.info["password"]) as c:
        assert c.url == ppool.url
        att = c.attach(info(peers, iqn), "vm-1")
        c.detach(attachment=att)


def test_halted_vm_goes_to_its_affinity_host(ppool, peers, client):
    iqn = peers.new_target(luns=(1,))
    xapi = ppool.session().xenapi
    vm = xapi.VM.get_by_name_label("vm-4")[0]
    assert xapi.VM.get_power_state(vm) == "Halted"
    data = {
        "driver_volume_type": "iscsi",
        "data": {"target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1},
    }
    att = client.attach(data, xapi.VM.get_uuid(vm), read_only=True)
    assert att.plugged is False and att.mode == "ro"
    assert att.host_uuid == xapi.host.get_uuid(xapi.VM.get_affinity(vm))
    client.detach(vdi=att.vdi_uuid)


def test_connect_on_a_migration_destination(ppool, peers, client):
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    dest = ppool.host(2)
    conn = client.connect(info(peers, iqn), dest.uuid)
    assert conn.host_uuid == dest.uuid
    xapi = ppool.session().xenapi
    sr = xapi.SR.get_by_uuid(conn.sr_uuid)
    assert dest.ref in [xapi.PBD.get_host(p) for p in xapi.SR.get_PBDs(sr)]
    assert client.disconnect(conn)["note"] == "SR forgotten"
    conn = client.connect(info(peers, iqn), "xs03")  # by name
    client.disconnect(connection_info=info(peers, iqn), host="xs03")
    assert state(ppool) == before
    assert CHAP[1] not in everything_said(ppool)


def test_version_mismatch_and_missing_plugin(ppool, client):
    versions = client.versions()
    assert set(versions) == set(h.uuid for h in ppool.sim.hosts)
    assert all(v["api_level"] == API_LEVEL for v in versions.values())
    host = ppool.host(2)
    vfile = os.path.join(host.plugins_dir, "xenvol_dom0", "version.py")
    text = open(vfile).read()
    with open(vfile, "w") as fh:
        fh.write(text.replace('API_LEVEL = "%s"' % API_LEVEL, 'API_LEVEL = "2.3"'))
    fresh = xenvol.Client(ppool.url, "root", ppool.info["password"])
    with pytest.raises(errors.PluginIncompatible) as e:
        fresh.connect({"driver_volume_type": "iscsi", "data": {}}, host.uuid)
    assert "API 2.3" in e.value.message and "needs API 1.1" in e.value.message
    assert e.value.exit_code == 5
    os.unlink(os.path.join(host.plugins_dir, "xenvol"))
    fresh = xenvol.Client(ppool.url, "root", ppool.info["password"])
    with pytest.raises(errors.PluginMissing) as e:
        fresh.drivers(host.uuid)
    assert "supplemental pack" in e.value.message
    assert fresh.versions()[host.uuid]["code"] == "XENAPI_MISSING_PLUGIN"
    fresh.close()


def test_every_error_class(ppool, peers, client):
    iqn = peers.new_target(luns=(1,))
    good = {
        "driver_volume_type": "iscsi",
        "data": {"target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1},
    }
    bad_lun = json.loads(json.dumps(good))
    bad_lun["data"]["target_lun"] = -4
    cases = [
        (lambda: client.attach(bad_lun, "vm-1"), errors.InvalidConnectionInfo, "data.target_lun"),
        (
            lambda: client.attach(good, "vm-1", mountpoint="floppy"),
            errors.InvalidArgument,
            "mountpoint",
        ),
        (
            lambda: client.attach({"driver_volume_type": "acme-nosuch", "data": {}}, "vm-1"),
            errors.DriverNotFound,
            "connection_info.driver_volume_type",
        ),
        (
            lambda: client.attach(
                {"driver_volume_type": "nfs", "data": {"export": "h:/v", "name": "volume-1"}},
                "vm-1",
            ),
            errors.UnsupportedVolume,
            "data.sr_uuid",
        ),
        (lambda: client.attach(good, "no-such-vm"), errors.VMNotFound, "vm"),
        (lambda: client.attach(good, "vm-1", mountpoint="xvda"), errors.DeviceBusy, "mountpoint"),
        (lambda: client.connect(good, "no-such-host"), errors.HostNotFound, "host"),
        (lambda: client.detach(), errors.InvalidArgument, "mountpoint"),
        (
            lambda: client.attach("not a dict", "vm-1"),
            errors.InvalidConnectionInfo,
            "connection_info",
        ),
    ]
    for fn, cls, field in cases:
        with pytest.raises(cls) as e:
            fn()
        assert e.value.field == field, (cls, e.value.message)
    xapi = ppool.session().xenapi
    twin = xapi.VM.get_by_name_label("vm-2")[0]
    xapi.VM.set_name_label(twin, "vm-1")
    with pytest.raises(errors.InvalidArgument) as e:
        client.attach(good, "vm-1")
    assert "2 VMs are named" in e.value.message
    xapi.VM.set_name_label(twin, "vm-2")
    ppool.admin.inject_fault("VBD.create", ["VM_HVM_REQUIRED", "x"], {"caller": "plugin"})
    with pytest.raises(errors.XapiError) as e:
        client.attach(good, "vm-1")
    assert e.value.code == "XENVOL_XAPI_ERROR" and e.value.xapi_error[0] == "VM_HVM_REQUIRED"
    att = client.attach(good, "vm-1")
    ppool.admin.inject_fault(
        "VBD.unplug", ["DEVICE_DETACH_REJECTED", "VBD", "x", ""], {"every": True}
    )
    with pytest.raises(errors.DetachFailed):
        client.detach(attachment=att)
    ppool.admin.clear()
    # another call holding the SR's pool lease makes this one give up after lock_timeout
    sr = xapi.SR.get_by_uuid(att.sr_uuid)
    for h in ppool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump({"lock_timeout": 1}, fh)
    import time

    xapi.SR.add_to_other_config(sr, "xenvol-lease", "other/1/%d" % time.time())
    with pytest.raises(errors.Busy):
        client.detach(attachment=att)
    xapi.SR.remove_from_other_config(sr, "xenvol-lease")
    client.detach(attachment=att)
    with pytest.raises(errors.AuthenticationFailed):
        xenvol.Client(ppool.url, "root", "wrong")
    with pytest.raises(xenvol.ConnectionFailed):
        xenvol.Client("http://127.0.0.1:9/", "root", "x", timeout=2)


def test_adapter_has_the_libvirt_driver_interface(ppool, peers, client):
    iqn = peers.new_target(luns=(1,))
    before = state(ppool)
    driver = xenvol.XenVolumeDriver(client, "vm-1")
    data = {
        "driver_volume_type": "iscsi",
        "data": {"target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1},
    }
    out = driver.connect_volume(data, "/dev/xvdd")
    assert out["device"] == "xvdd"
    driver.disconnect_volume(data, "/dev/xvdd")
    assert state(ppool) == before


def test_drivers_on_every_host(ppool, client):
    out = client.drivers()
    assert len(out) == 3
    assert all("iscsi" in [d["driver_volume_type"] for d in v["drivers"]] for v in out.values())


def test_existing_session_and_tls(tmp_path, peers):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.check_call(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=xapisim",
            "-keyout",
            key,
            "-out",
            cert,
            "-addext",
            "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pool = plugin_pool(tls=(cert, key))
    try:
        assert pool.url.startswith("https://")
        with pytest.raises(xenvol.ConnectionFailed) as e:
            xenvol.Client(pool.url, "root", pool.info["password"], timeout=5)
        assert "CERTIFICATE_VERIFY_FAILED" in e.value.message
        with xenvol.Client(pool.url, "root", pool.info["password"], cafile=cert) as c:
            assert c.versions()[pool.host(0).uuid]["api_level"] == API_LEVEL
        with xenvol.Client(
            pool.info["member_urls"][0], "root", pool.info["password"], verify_tls=False
        ) as c:
            assert c.url == pool.url
        session = pool.session()
        c = xenvol.Client.from_session(session)
        assert len(c.drivers()) == 3
        c.close()
        assert session.xenapi.pool.get_all()  # from_session never logs out a borrowed session
    finally:
        pool.close()


def test_live_migration_with_a_connected_destination(ppool, peers, client):
    """connect on the destination, migrate, drop the connection: the volume follows the VM."""
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    xapi = ppool.session().xenapi
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    for vbd in xapi.VM.get_VBDs(vm):  # its local root disk could not live-migrate
        xapi.VBD.destroy(vbd)
    xapi.VM.start_on(vm, ppool.host(0).ref, False, False)
    before = state(ppool)
    att = client.attach(info(peers, iqn), "vm-2")
    dest = ppool.host(2)
    sr = xapi.SR.get_by_uuid(att.sr_uuid)
    with pytest.raises(Exception) as e:
        xapi.VM.pool_migrate(vm, dest.ref, {})
    assert "VM_REQUIRES_SR" in str(e.value)
    conn = client.connect(info(peers, iqn), dest.uuid)
    assert conn.vdi_uuid == att.vdi_uuid
    xapi.VM.pool_migrate(vm, dest.ref, {})
    assert xapi.VM.get_resident_on(vm) == dest.ref
    assert client.disconnect(conn)["note"].startswith("SR kept")
    [listed] = client.attachments("vm-2")  # routed to the new host
    assert listed.vbd_uuid == att.vbd_uuid and listed.plugged
    assert client.detach(vm="vm-2", mountpoint=att.device)[0].vbd_uuid == att.vbd_uuid
    with pytest.raises(XenAPI.Failure):
        xapi.SR.get_record(sr)  # the last user gone, the SR is forgotten on every host
    after = state(ppool)
    assert after["SR"] == before["SR"] and after["PBD"] == before["PBD"]
    assert after["secret"] == before["secret"]
