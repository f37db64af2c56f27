"""The installed `xenvol` command against `xapisim serve`, as an operator would use it."""

import json
import os
import subprocess
import sys

import pytest

from conftest import API_LEVEL, FAST_SETTINGS, PLUGINS
from xenvol import Client, errors

BIN = os.path.dirname(sys.executable)


@pytest.fixture
def served(tmp_path):
    proc = subprocess.Popen(
        [
            os.path.join(BIN, "xapisim"),
            "serve",
            "--hosts",
            "3",
            "--vms",
            "4",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "pool"),
            "--plugins",
            PLUGINS,
        ],
        stdout=subprocess.PIPE,
    )
    info = json.loads(proc.stdout.readline())
    for i in range(3):
        with open(str(tmp_path / "pool" / ("h%d" % i) / "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(FAST_SETTINGS, fh)
    yield info
    proc.terminate()
    proc.wait(timeout=20)


def xenvol(served, *args, stdin=None, password=True, env_extra=None):
    env = dict(os.environ, XENVOL_URL=served["url"], XENVOL_USERNAME="root")
    env.pop("XENVOL_PASSWORD", None)
    if password:
        env["XENVOL_PASSWORD"] = served["password"]
    env.update(env_extra or {})
    return subprocess.run(
        [os.path.join(BIN, "xenvol")] + list(args),
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_operator_session(served, peers, tmp_path):
    iqn = peers.new_target(luns=(1, 2), chap=("opuser", "Operator-Secret-1"))
    info = {
        "driver_volume_type": "iscsi",
        "data": {
            "target_portal": peers.iscsi.portal,
            "target_iqn": iqn,
            "target_lun": 1,
            "auth_method": "CHAP",
            "auth_username": "opuser",
            "auth_password": "Operator-Secret-1",
        },
    }
    path = tmp_path / "vol.json"
    path.write_text(json.dumps(info))
    p = xenvol(served, "attach", "vm-3", str(path), "--mountpoint", "xvdc")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("attached ") and "as xvdc" in p.stdout
    info["data"]["target_lun"] = 2
    p = xenvol(served, "--json", "attach", "vm-1", "-", stdin=json.dumps(info))
    second = json.loads(p.stdout)
    assert second["userdevice"] == "1" and second["plugged"] is True
    p = xenvol(served, "list")
    assert p.returncode == 0 and p.stdout.count("iscsi") == 2 and "VM_UUID" in p.stdout
    assert "vm-3" in p.stdout and "xs0" in p.stdout  # names beside uuids
    p = xenvol(served, "--json", "list", "vm-3")
    assert [a["device"] for a in json.loads(p.stdout)] == ["xvdc"]
    assert json.loads(p.stdout)[0]["vm_name"] == "vm-3"
    p = xenvol(served, "--minimal", "list")
    assert sorted(p.stdout.strip().split(",")) == sorted(
        [
            second["vdi_uuid"],
            json.loads(xenvol(served, "--json", "list", "vm-3").stdout)[0]["vdi_uuid"],
        ]
    )
    p = xenvol(served, "detach", "vm-3", "xvdc")
    assert p.returncode == 0 and "detached" in p.stdout
    p = xenvol(served, "detach", "--vdi", second["vdi_uuid"])
    assert p.returncode == 0
    p = xenvol(served, "detach", "vm-3", "xvdc")
    assert p.returncode == 0 and "nothing to detach" in p.stdout
    p = xenvol(served, "connect", "xs03", str(path))
    assert p.returncode == 0 and p.stdout.startswith("connected VDI")
    p = xenvol(served, "disconnect", "xs03", str(path))
    assert p.returncode == 0 and "SR forgotten" in p.stdout
    p = xenvol(served, "version")
    assert p.stdout.startswith("xenvol client ") and len(p.stdout.strip().splitlines()) == 5
    assert [line.split()[3:5] for line in p.stdout.splitlines()[2:]] == [[API_LEVEL, "ok"]] * 3
    assert p.returncode == 0
    p = xenvol(served, "--json", "drivers", "xs02")
    assert "iscsi" in [
        d["driver_volume_type"] for d in list(json.loads(p.stdout).values())[0]["drivers"]
    ]


def run_case(served, args, stdin=None, env=None, password=True):
    p = xenvol(served, *args, stdin=stdin, password=password, env_extra=env)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    return p


def test_error_paths(served, peers, tmp_path):
    """Every error: one line on stderr (no traceback) and its documented exit code."""
    iqn = peers.new_target(luns=(1,))
    good = {
        "driver_volume_type": "iscsi",
        "data": {"target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1},
    }
    bad = json.loads(json.dumps(good))
    bad["data"]["target_lun"] = "x"
    wrong = json.loads(json.dumps(good))
    wrong["data"]["target_portal"] = "127.0.0.1:3999"
    badjson = tmp_path / "bad.json"
    badjson.write_text("{oops")
    pw = tmp_path / "pw"
    pw.write_text(served["password"] + "\n")
    wrongpw = tmp_path / "wrongpw"
    wrongpw.write_text("nope\n")
    port = served["url"].rsplit(":", 1)[1].strip("/")
    nopw = {"password": False}
    cases = [
        # (args, stdin, env, options, exit code, text on stderr)
        (["attach", "vm-1", "-"], json.dumps(bad), None, {}, 2, "data.target_lun"),
        (["attach", "vm-1", "-"], "{oops", None, {}, 2, "stdin is not valid JSON"),
        (["attach", "vm-1", str(badjson)], None, None, {}, 2, "%s is not valid JSON" % badjson),
        (
            ["attach", "vm-1", "/nonexistent.json"],
            None,
            None,
            {},
            2,
            "cannot read /nonexistent.json",
        ),
        (["attach", "nobody", "-"], json.dumps(good), None, {}, 3, "no VM"),
        (["attach", "vm-1", "-"], json.dumps(wrong), None, {}, 4, "storage backend"),
        (["attach", "vm-1", "-"], json.dumps(good), None, nopw, 2, "XENVOL_PASSWORD"),
        (
            ["--password-file", "/nonexistent", "list"],
            None,
            None,
            nopw,
            2,
            "--password-file: cannot read /nonexistent",
        ),
        (["--password-file", str(wrongpw), "list"], None, None, nopw, 7, "login refused"),
        (["list"], None, {"XENVOL_URL": ""}, {}, 2, "--url"),
        (["--url", "ftp://x", "list"], None, None, {}, 2, "not a host name or an http(s) URL"),
        # no scheme: https:// on the simulator's plain-HTTP port, which answers no TLS
        (["--url", "127.0.0.1:%s" % port, "list"], None, None, {}, 7, "https://127.0.0.1"),
        (["--url", "http://127.0.0.1:9", "list"], None, None, {}, 7, "cannot reach"),
        (["--trust-fingerprint", "abc", "list"], None, None, {}, 2, "not a SHA-256"),
        (["detach", "vm-1"], None, None, {}, 2, "give VM and MOUNTPOINT"),
        (["connect", "nohost", "-"], json.dumps(good), None, {}, 3, "no single host"),
        (
            ["pack", "verify", "/nonexistent.iso", "--key", "/etc/hostname"],
            None,
            None,
            {},
            6,
            "holds no public key",
        ),
        (
            ["pack", "install", "h1", "--iso", "/nonexistent.iso"],
            None,
            None,
            {},
            6,
            "--iso /nonexistent.iso: no such file",
        ),
        (["attach"], None, None, {}, 2, "usage:"),
    ]
    for args, stdin, env, opts, code, text in cases:
        p = run_case(served, args, stdin, env, **opts)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert text in p.stderr, (args, p.stderr)
        if code != 2 or "usage:" not in p.stderr:
            assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    # Retry-safe: a VDI gone (its SR forgotten by a first detach) is nothing to detach.
    p = run_case(served, ["detach", "--vdi", "00000000-0000-0000-0000-000000000000"])
    assert p.returncode == 0 and "nothing to detach" in p.stdout
    # --json errors are one JSON document on stdout
    p = run_case(served, ["--json", "attach", "vm-1", "-"], json.dumps(wrong))
    assert p.returncode == 4 and json.loads(p.stdout)["details"]["sm_code"] == "141"
    # a closed pipe is quiet
    p = subprocess.run(
        "%s --json drivers | head -c 10 >/dev/null; echo ${PIPESTATUS[0]}"
        % os.path.join(BIN, "xenvol"),
        shell=True,
        executable="/bin/bash",
        env=dict(os.environ, XENVOL_URL=served["url"], XENVOL_PASSWORD=served["password"]),
        capture_output=True,
        text=True,
    )
    assert p.stderr == "" and p.stdout.strip() in ("0", "141")


def test_a_host_without_the_plugin(served):
    """version exits 5; list and drivers list the other hosts, name the missing one, exit 5."""
    os.unlink(os.path.join(served["state_dir"], "h1", "etc/xapi.d/plugins/xenvol"))  # xs02
    p = run_case(served, ["version"])
    rows = dict((line.split()[0], line) for line in p.stdout.splitlines()[2:])
    assert p.returncode == 5 and sorted(rows) == ["xs01", "xs02", "xs03"]
    assert rows["xs01"].split()[3] == API_LEVEL and "no xenvol plugin" in rows["xs02"]
    p = run_case(served, ["drivers"])
    assert p.returncode == 5
    assert "xs01" in p.stdout and "xs03" in p.stdout and "xs02" not in p.stdout
    assert "warning: host xs02" in p.stderr and "xenvol pack install" in p.stderr
    assert "yum install xenvol-xapi-plugin" not in p.stderr  # no repository carries it
    p = run_case(served, ["list"])
    assert p.returncode == 5 and "(none)" in p.stdout and "host xs02" in p.stderr
    p = run_case(served, ["drivers", "xs02"])
    assert p.returncode == 5 and "supplemental pack" in p.stderr
    p = run_case(served, ["--minimal", "drivers", "xs03"])
    assert p.returncode == 0 and "iscsi" in p.stdout.strip().split(",")


def test_self_signed_certificate_trusted_on_first_use(tmp_path, monkeypatch):
    """A self-signed certificate: a hint with its fingerprint; --trust-fingerprint trusts
    and remembers it, for the library too (a URL without a scheme is https:// there as
    well); a changed certificate is refused."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))

    def cert(name):
        c, k = str(tmp_path / (name + ".pem")), str(tmp_path / (name + ".key"))
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
                k,
                "-out",
                c,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        fpr = subprocess.check_output(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", c],
            universal_newlines=True,
        )
        return c, k, fpr.strip().split("=", 1)[1]

    def serve(c, k):
        proc = subprocess.Popen(
            [
                os.path.join(BIN, "xapisim"),
                "serve",
                "--hosts",
                "1",
                "--vms",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                str(tmp_path / ("pool-" + os.path.basename(c))),
                "--plugins",
                PLUGINS,
                "--tls-cert",
                c,
                "--tls-key",
                k,
            ],
            stdout=subprocess.PIPE,
        )
        return proc, json.loads(proc.stdout.readline())

    c1, k1, fpr1 = cert("one")
    proc, info = serve(c1, k1)
    try:
        hostport = info["url"].split("//", 1)[1].rstrip("/")
        env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XENVOL_URL": hostport}
        p = run_case(info, ["version"], env=env)
        assert p.returncode == 7 and "self-signed" in p.stderr and fpr1 in p.stderr
        assert "--trust-fingerprint %s" % fpr1 in p.stderr
        with pytest.raises(errors.ConnectionFailed) as e:
            Client(hostport, "root", info["password"])
        assert fpr1 in e.value.message and "pinned_certs={'%s'" % hostport in e.value.message
        assert "--trust-fingerprint" in e.value.message
        p = run_case(
            info, ["--trust-fingerprint", fpr1.lower().replace(":", ""), "version"], env=env
        )
        assert p.returncode == 0, p.stderr
        known = open(str(tmp_path / "cfg" / "xenvol" / "known_certs")).read()
        assert hostport in known
        p = run_case(info, ["version"], env=env)  # remembered
        assert p.returncode == 0, p.stderr
        with Client(hostport, "root", info["password"]) as c:  # the CLI's pin
            assert c.url == "https://%s/" % hostport and c.attachments() == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # the same address now presents another certificate
    c2, k2, fpr2 = cert("two")
    port = int(hostport.rsplit(":", 1)[1])
    proc2 = subprocess.Popen(
        [
            os.path.join(BIN, "xapisim"),
            "serve",
            "--hosts",
            "1",
            "--vms",
            "1",
            "--listen",
            "127.0.0.1:%d" % port,
            "--state-dir",
            str(tmp_path / "pool2"),
            "--plugins",
            PLUGINS,
            "--tls-cert",
            c2,
            "--tls-key",
            k2,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        info2 = json.loads(proc2.stdout.readline())
        p = run_case(info2, ["version"], env=env)
        assert p.returncode == 7 and "changed" in p.stderr and fpr2 in p.stderr
    finally:
        proc2.terminate()
        proc2.wait(timeout=20)


def test_password_prompt_on_a_terminal(served):
    """Without XENVOL_PASSWORD, on a terminal, the password is asked for (and not echoed)."""
    import pty
    import select
    import time

    env = dict(os.environ, XENVOL_URL=served["url"])
    env.pop("XENVOL_PASSWORD", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(os.path.join(BIN, "xenvol"), ["xenvol", "list"], env)
    out, sent, deadline = b"", False, time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not sent and b"Password for root@" in out:
            os.write(fd, (served["password"] + "\n").encode())
            sent = True
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert sent and os.WEXITSTATUS(status) == 0, text
    assert served["password"] not in text  # not echoed
    assert "(none)" in text
