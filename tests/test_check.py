"""`xenvol check` (issue 24) on the simulated pool: each check's OK and its FAIL/WARN
outcomes, produced for real (a plugin missing, versions differing, a bad config, a dead
journal and its lease, a skewed clock, an SM type missing, duplicate IQNs, inconsistent
multipathing, no FC port, an untrusted certificate), and nothing changed in the pool;
--smoke leaves the pool identical and refuses a running VM or dom0."""

import json
import os
import re
import subprocess

import pytest

import xenvol
from conftest import API_LEVEL, REPO, PluginError, plugin, plugin_pool, state
from xenvol import check, cli, errors


def run(pool, types=None, pins=None, verify=True, smoke_vm=None):
    return check.run(
        pool.url,
        lambda: xenvol.Client(pool.url, "root", pool.info["password"], verify_tls=False),
        verify,
        None,
        pins or {},
        10,
        types,
        smoke_vm,
    )


def found(result, name, host=None):
    """{host name or "pool": (status, why)} of one check."""
    for f in result["findings"]:
        assert f["check"] in check.CHECKS or f["check"].startswith("storage:"), f
    return dict(
        (f["host"] or "pool", (f["status"], f["why"]))
        for f in result["findings"]
        if f["check"] == name and (host is None or f["host"] == host)
    )


def statuses(result, name):
    return dict((h, s) for h, (s, _w) in found(result, name).items())


def fc_view(pool):
    """A real host's kernel lists its FC ports from boot; the simulated fabric writes them
    at a rescan, which SR.probe type=hba makes."""
    xapi = pool.session().xenapi
    for h in pool.sim.hosts:
        try:
            xapi.SR.probe(h.ref, {}, "hba", {})
        except Exception:
            pass  # no port, or nothing behind it: the sysfs view is written all the same


def file_roots(pool):
    for h in pool.sim.hosts:
        os.makedirs(h.path("/var/lib/xenvol/volumes"), exist_ok=True)


# A ready pool passes every check of check.CHECKS but these: tls and xapi-features (asserted on
# their own below), storage:<type> (a check per type, below), and those that speak only of a
# failure, a plugin without probe or a --smoke run (connect, dom0, storage, smoke).
NOT_ALL_OK = ("tls", "connect", "dom0", "storage", "storage:<type>", "xapi-features", "smoke")
ALL_OK = tuple(c for c in check.CHECKS if c not in NOT_ALL_OK)


def test_a_ready_pool_is_ok_and_the_check_changes_nothing(ppool, tmp_path, monkeypatch, capsys):
    fc_view(ppool)
    file_roots(ppool)
    before = state(ppool)
    result = run(ppool, types=["iscsi", "fibre_channel", "file", "nfs"])
    assert state(ppool) == before
    assert set(NOT_ALL_OK) < set(check.CHECKS)
    for name in ALL_OK:
        assert set(statuses(result, name).values()) == {"OK"}, (name, found(result, name))
    assert sorted(statuses(result, "plugin")) == ["xs01", "xs02", "xs03"]
    assert sorted(statuses(result, "clock")) == ["xs02", "xs03"]  # each against the master
    for t in ("iscsi", "fibre_channel", "file", "nfs"):
        assert statuses(result, "storage:" + t) == {"pool": "OK"}
    assert found(result, "fc", "xs02")["xs02"][1].startswith("WWPNs 10000000c901000")
    assert statuses(result, "tls") == {"pool": "WARN"}  # plain http
    # xapi's system.listMethods, or without it the fallback by version
    assert statuses(result, "xapi-features")["pool"] in ("OK", "WARN")
    assert "VM.call_host_plugin" in found(result, "xapi-features")["pool"][1]
    assert result["summary"]["FAIL"] == 0
    # The CLI: exit 0 without a FAIL, --json, --report with versions and answers, no secret.
    monkeypatch.setenv("XENVOL_PASSWORD", ppool.info["password"])
    report = str(tmp_path / "report.json")
    args = ["--url", ppool.url, "--json", "check", "--types", "iscsi", "--report", report]
    assert cli.main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["FAIL"] == 0 and {f["check"] for f in data["findings"]} >= {
        "plugin",
        "storage:iscsi",
    }
    text = open(report).read()
    assert ppool.info["password"] not in text
    rep = json.loads(text)
    xs01 = rep["versions"]["hosts"]["xs01"]
    assert xs01["xapi"] == "26.1" and xs01["dom0_python"].startswith("3.")
    assert xs01["xenvol_plugin"] == rep["answers"]["version"][xs01["uuid"]]["version"]
    assert set(rep["answers"]) >= {"host.get_all_records", "SM.get_all_records", "probe"}
    assert cli.main(["--url", ppool.url, "check", "--types", "iscsi"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.match(r"^0 FAIL, [12] WARN, \d+ OK$", last), last


def test_a_missing_plugin_and_differing_versions(ppool, monkeypatch, capsys):
    os.unlink(os.path.join(ppool.host(2).plugins_dir, "xenvol"))
    vfile = os.path.join(ppool.host(1).plugins_dir, "xenvol_dom0", "VERSION")
    with open(vfile) as fh:
        version = fh.read().strip()
    with open(vfile, "w") as fh:
        fh.write("0.1.9\n")
    # and xs02's plugin is one from before `probe`
    ops = os.path.join(ppool.host(1).plugins_dir, "xenvol_dom0", "operations.py")
    with open(ops) as fh:
        text = fh.read()
    with open(ops, "w") as fh:
        fh.write(text.replace('    "probe",\n', "", 1))
    result = run(ppool)
    assert statuses(result, "plugin") == {"xs01": "OK", "xs02": "OK", "xs03": "FAIL"}
    status, why = found(result, "dom0", "xs02")["xs02"]
    assert (
        status == "WARN"
        and why == "the plugin (0.1.9) has no probe function: its dom0 is not checked"
    )
    assert found(result, "plugin", "xs03")["xs03"][1] == "the xenvol plugin is not installed"
    status, why = found(result, "plugin-versions")["pool"]
    assert status == "WARN"
    assert why.startswith("hosts run different plugins: ")
    assert sorted(why.split(": ", 1)[1].split("; ")) == sorted(
        ["0.1.9 (API %s) on xs02" % API_LEVEL, "%s (API %s) on xs01" % (version, API_LEVEL)]
    )
    # no dom0 checks where there is no plugin, or no probe
    assert sorted(statuses(result, "config")) == ["xs01"]
    monkeypatch.setenv("XENVOL_PASSWORD", ppool.info["password"])
    assert cli.main(["--url", ppool.url, "check"]) == check.EXIT_CHECK
    out = capsys.readouterr().out
    assert "FAIL  plugin" in out and "xe-install-supplemental-pack" in out


def test_a_bad_config_a_dead_journal_and_its_lease(ppool, tmp_path):
    xapi = ppool.session().xenapi
    with open(os.path.join(ppool.host(1).root, "etc/xenvol/xenvol.conf"), "w") as fh:
        fh.write('{"lock_timeout": "abc"}')
    # An attach killed while it sets up its SR: its journal is dead, its SR lease held.
    master = ppool.host(0)
    d = master.path("/var/lib/xenvol/volumes/v1")
    os.makedirs(d)
    vdi = "8e5c1e55-1d0b-4c4c-9a3e-0c7c1b0d9f01"
    with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
        fh.truncate(1 << 20)
    vm = xapi.VM.get_by_name_label("vm-2")[0]  # halted, its home the master
    ppool.admin.kill_plugin("PBD.plug", {"host": master.uuid})
    with pytest.raises(PluginError):
        plugin(
            xapi,
            master,
            "attach_volume",
            vm_uuid=xapi.VM.get_uuid(vm),
            connection_info={
                "driver_volume_type": "file",
                "data": {"path": "/var/lib/xenvol/volumes/v1", "vdi_uuid": vdi},
            },
        )
    # xs03's results directory is a file: nothing could be journaled or kept there.
    results = ppool.host(2).path("/var/lib/xenvol/results")
    if os.path.isdir(results):
        os.rmdir(results)
    open(results, "w").close()
    before = state(ppool)
    result = run(ppool)
    assert state(ppool) == before  # read-only: the journal and the lease are still there
    assert statuses(result, "dirs") == {"xs01": "OK", "xs02": "OK", "xs03": "FAIL"}
    assert found(result, "dirs", "xs03")["xs03"][1] == (
        "results /var/lib/xenvol/results is not a directory"
    )
    assert statuses(result, "config") == {"xs01": "OK", "xs02": "FAIL", "xs03": "OK"}
    assert found(result, "config", "xs02")["xs02"][1] == (
        '/etc/xenvol/xenvol.conf: lock_timeout: must be a number from 1 to 86400 (got "abc")'
    )
    assert statuses(result, "journals") == {"xs01": "WARN", "xs02": "WARN", "xs03": "OK"}
    assert "(attach_volume) is dead with" in found(result, "journals", "xs01")["xs01"][1]
    assert found(result, "journals", "xs02")["xs02"][1] == "not known while xenvol.conf is invalid"
    status, why = found(result, "leases")["pool"]
    assert status == "WARN" and "held by a dead operation" in why
    assert os.listdir(master.path("/var/lib/xenvol/ops"))  # still waiting for gc or a call


def test_skewed_clocks(ppool):
    ppool.admin.clock_offset(ppool.host(2).uuid, 600)
    ppool.admin.clock_offset(ppool.host(1).uuid, -30)
    result = run(ppool)
    assert statuses(result, "clock") == {"xs02": "WARN", "xs03": "FAIL"}
    status, why = found(result, "clock", "xs03")["xs03"]
    assert why.startswith(("+600 s against the master", "+599 s against the master"))
    assert "lease_stale_after/2 (30 s)" not in why and "(450 s)" in why
    assert statuses(result, "client-clock") == {"pool": "OK"}
    for h in ppool.sim.hosts:
        ppool.admin.clock_offset(h.uuid, 400)
    result = run(ppool)
    assert set(statuses(result, "clock").values()) == {"OK"}
    status, why = found(result, "client-clock")["pool"]
    assert status == "WARN" and "xenvol-expires" in why  # 0.2.0 plugins time secrets themselves
    # A host with a plugin from before API 1.2 compares xenvol-expires with its own clock.
    vfile = os.path.join(ppool.host(2).plugins_dir, "xenvol_dom0", "version.py")
    with open(vfile) as fh:
        text = fh.read()
    with open(vfile, "w") as fh:
        fh.write(re.sub(r'^API_LEVEL = ".*"', 'API_LEVEL = "1.1"', text, flags=re.M))
    status, why = found(run(ppool), "client-clock")["pool"]
    assert status == "FAIL" and "the plugin on xs03 (before 0.2.0)" in why
    for h in ppool.sim.hosts:
        ppool.admin.clock_offset(h.uuid, -20)
    assert statuses(run(ppool), "client-clock") == {"pool": "WARN"}


def test_storage_an_sm_missing_duplicate_iqns_multipath_and_fc(ppool):
    xapi = ppool.session().xenapi
    ppool.admin.sm_unregister("glusterfs")
    ppool.admin.fc_ports(ppool.host(2).uuid, [])
    fc_view(ppool)
    hosts = [h.ref for h in ppool.sim.hosts]
    iqn = xapi.host.get_other_config(hosts[0])["iscsi_iqn"]
    xapi.host.remove_from_other_config(hosts[2], "iscsi_iqn")
    xapi.host.add_to_other_config(hosts[2], "iscsi_iqn", iqn)
    xapi.host.add_to_other_config(hosts[1], "multipathing", "true")
    result = run(ppool, types=["glusterfs", "iscsi", "fibre_channel"])
    status, why = found(result, "storage:glusterfs")["pool"]
    assert (status, why) == (
        "FAIL",
        "SM type glusterfs is not registered: glusterfs volumes cannot attach",
    )
    assert statuses(result, "storage:iscsi") == {"pool": "OK"}
    status, why = found(result, "iscsi-iqn-unique")["pool"]
    assert status == "FAIL" and why == "%s is the IQN of xs01, xs03" % iqn
    status, why = found(result, "multipath")["pool"]
    assert status == "WARN" and why == "multipathing is on for xs02, off for xs01, xs03"
    assert statuses(result, "fc") == {"xs01": "OK", "xs02": "OK", "xs03": "FAIL"}
    # Not named: a driver that cannot work is a warning, the rest as before.
    result = run(ppool)
    assert statuses(result, "storage:glusterfs") == {"pool": "WARN"}
    assert statuses(result, "fc")["xs03"] == "WARN"
    assert statuses(result, "iscsi-iqn-unique") == {"pool": "FAIL"}
    assert statuses(run(ppool, types=["rbd"]), "storage")["pool"] == "FAIL"


def test_a_self_signed_certificate_not_yet_trusted(tmp_path, monkeypatch, capsys):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.check_call(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=xapisim", "-keyout", key, "-out", cert]
        + ["-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pool = plugin_pool(tls=(cert, key))
    try:
        result = run(pool)
        status, why = found(result, "tls")["pool"]
        assert status == "FAIL" and "is not trusted here" in why
        fpr = why.split("SHA-256 ")[1].split(")")[0]
        assert found(result, "connect")["pool"][0] == "FAIL"  # no password sent
        assert len(result["findings"]) == 2
        hostport = pool.url.split("//")[1].rstrip("/")
        result = run(pool, pins={hostport: fpr})
        assert found(result, "tls")["pool"][0] == "OK"
        assert found(result, "plugin-versions")["pool"][0] == "OK"
        result = run(pool, pins={hostport: "00" * 32})
        assert found(result, "tls")["pool"][0] == "FAIL"
        assert "changed" in found(result, "tls")["pool"][1]
        assert found(run(pool, verify=False), "tls")["pool"][0] == "WARN"
        # The CLI trusts it after --trust-fingerprint (remembered in known_certs).
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.setenv("XENVOL_PASSWORD", pool.info["password"])
        assert cli.main(["--url", pool.url, "check"]) == check.EXIT_CHECK
        assert "--trust-fingerprint %s" % fpr in capsys.readouterr().out
        args = ["--url", pool.url, "--trust-fingerprint", fpr, "--json", "check"]
        assert cli.main(args) == 0
        data = json.loads(capsys.readouterr().out)
        assert [f["status"] for f in data["findings"] if f["check"] == "tls"] == ["OK"]
    finally:
        pool.close()


def test_smoke_leaves_the_pool_as_it_was_and_refuses_running_vms_and_dom0(ppool):
    xapi = ppool.session().xenapi
    file_roots(ppool)
    before = state(ppool)
    result = run(ppool, types=["file"], smoke_vm="vm-2")
    status, why = found(result, "smoke")["xs01"]
    assert status == "OK", why
    assert why.startswith("VM vm-2: made /var/lib/xenvol/volumes/xenvol-smoke-")
    assert "attached as userdevice 1, detached, removed it; SRs, PBDs, VDIs" in why
    assert result["smoke"]["changes"] == []
    assert state(ppool) == before
    assert os.listdir(ppool.host(0).path("/var/lib/xenvol/volumes")) == []
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as client:
        with pytest.raises(errors.InvalidArgument) as e:
            check.smoke(client, "vm-1")
        assert "is Running" in e.value.message
        dom0 = xapi.host.get_control_domain(ppool.host(1).ref)
        with pytest.raises(errors.InvalidArgument) as e:
            check.smoke(client, xapi.VM.get_uuid(dom0))
        assert "control domain" in e.value.message
        with pytest.raises(errors.VMNotFound):
            check.smoke(client, "no-such-vm")
    # Without a file_roots directory on the VM's host it fails, saying what to do.
    os.rmdir(ppool.host(0).path("/var/lib/xenvol/volumes"))
    result = run(ppool, smoke_vm="vm-2")
    status, why = found(result, "smoke")["xs01"]
    assert status == "FAIL" and "make one (mkdir -p)" in why
    assert state(ppool) == before


def test_an_sm_record_and_the_servertime_through_the_wire(pool, xapi):
    """The simulator's SM records and host.get_servertime, as xapi answers them."""
    sms = dict((r["type"], r) for r in xapi.SM.get_all_records().values())
    assert {"iscsi", "nfs", "smb", "hba", "file", "glusterfs"} <= set(sms)
    assert "VDI_ATTACH" in sms["iscsi"]["capabilities"]
    assert sms["iscsi"]["features"]["VDI_ATTACH"] == "1"
    pool.admin.sm_unregister("nfs")
    assert "nfs" not in [r["type"] for r in xapi.SM.get_all_records().values()]
    t = xapi.host.get_servertime(pool.host(1).ref)
    pool.admin.clock_offset(pool.host(1).uuid, 3600)
    later = xapi.host.get_servertime(pool.host(1).ref)
    assert str(later) > str(t) and str(later).endswith("Z")
    assert abs(check._servertime(later) - check._servertime(t) - 3600) < 5


def test_ha_on_with_host_placement_is_a_warning(ppool):
    assert statuses(run(ppool), "ha") == {"pool": "OK"}
    # pool.ha_enabled is set by pool.enable_ha, which the simulator does not model: the test
    # sets the field (test set-up, not a behaviour under test).
    pool_ref = list(ppool.sim.db.tables["pool"])[0]
    ppool.sim.db.raw("pool", pool_ref)["ha_enabled"] = True
    status, why = found(run(ppool), "ha")["pool"]
    assert status == "WARN" and "placement is host" in why
    for h in ppool.sim.hosts:
        with open(h.path("/etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump({"placement": "pool"}, fh)
    assert found(run(ppool), "ha")["pool"][0] == "OK"


def test_the_docs_list_every_check():
    text = open(os.path.join(REPO, "docs", "check.md")).read()
    rows = re.findall(r"^\| `([^`]+)` \|", text, re.M)
    assert sorted(rows) == sorted(check.CHECKS)
    assert "`connect` FAIL" in text


def test_thresholds_and_answers_no_pool_gives():
    """The outcomes a simulated pool cannot produce (a full disk, an old Python, an xapi
    without a method xenvol needs, hosts mid-upgrade), on the answers the checks read."""
    c = check.PoolCheck.__new__(check.PoolCheck)
    c.findings, c.probes, c.answers, c.types, c.must = [], {}, {}, None, check.WARN
    c.master = "OpaqueRef:m"
    c.hosts = {
        "OpaqueRef:m": {
            "uuid": "u1",
            "name_label": "xs01",
            "API_version_major": "2",
            "API_version_minor": "21",
            "software_version": {"xapi": "26.1"},
            "other_config": {},
        },
        "OpaqueRef:b": {
            "uuid": "u2",
            "name_label": "xs02",
            "API_version_major": "2",
            "API_version_minor": "20",
            "software_version": {"xapi": "24.0"},
            "other_config": {},
        },
    }

    def dirs(free, **extra):
        return {
            "dirs": [
                dict(
                    {
                        "name": "journal",
                        "path": "/var/lib/xenvol/ops",
                        "writable": True,
                        "free_bytes": free,
                    },
                    **extra,
                )
            ]
        }

    c.check_dirs("OpaqueRef:m", dirs(512 << 10))
    c.check_dirs("OpaqueRef:m", dirs(10 << 20))
    c.check_dirs("OpaqueRef:m", dirs(10 << 30, read_only=True))
    c.check_python("OpaqueRef:m", {"python": "2.7.5"})
    assert [(f["check"], f["status"]) for f in c.findings] == [
        ("dirs", "FAIL"),
        ("dirs", "WARN"),
        ("dirs", "FAIL"),
        ("dom0-python", "FAIL"),
    ]
    assert c.findings[0]["why"] == "journal /var/lib/xenvol/ops has 512.0 KiB free"
    assert "(read-only)" in c.findings[2]["why"]
    c.findings = []

    class Session:
        class system:
            @staticmethod
            def listMethods():
                return ["host.call_plugin", "secret.introduce", "VM.call_host_plugin"]

    c.client = type("C", (), {"session": Session})()
    c.check_features()
    assert [(f["check"], f["status"]) for f in c.findings] == [
        ("xapi-version", "WARN"),
        ("xapi-features", "FAIL"),
    ]
    assert c.findings[1]["why"] == "xapi lacks secret.destroy, task.cancel"
    Session.system.listMethods = staticmethod(lambda: list(check.REQUIRED_METHODS))
    c.findings = []
    c.check_features()
    assert c.findings[1]["status"] == "OK" and "routing by host" in c.findings[1]["why"]
    report = check.scrub({"a": {"auth_password": "s3cret", "chappassword": "x", "name": "n"}})
    assert report == {"a": {"auth_password": "***", "chappassword": "***", "name": "n"}}


def test_a_damaged_journal_set_aside(ppool):
    """A journal that cannot be read is set aside, never run (gc kind `damaged`): the check
    names it on its host."""
    d = ppool.host(1).path("/var/lib/xenvol/ops")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "op-broken.json"), "w") as fh:
        fh.write("{not json\n")
    result = run(ppool)
    assert statuses(result, "set-aside") == {"xs01": "OK", "xs02": "WARN", "xs03": "OK"}
    why = found(result, "set-aside", "xs02")["xs02"][1]
    assert why.startswith("op-broken.json.damaged: a journal that cannot be read")
    assert statuses(result, "journals") == {"xs01": "OK", "xs02": "OK", "xs03": "OK"}
