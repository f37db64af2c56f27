"""The installed `xenvol` command against `xapisim serve`, as an operator would use it."""
import json
import os
import subprocess
import sys

import pytest

from conftest import FAST_SETTINGS, PLUGINS

BIN = os.path.dirname(sys.executable)


@pytest.fixture
def served(tmp_path):
    proc = subprocess.Popen([os.path.join(BIN, "xapisim"), "serve", "--hosts", "3", "--vms", "4",
                             "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "pool"),
                             "--plugins", PLUGINS], stdout=subprocess.PIPE)
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
    return subprocess.run([os.path.join(BIN, "xenvol")] + list(args), input=stdin, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def test_operator_session(served, peers, tmp_path):
    iqn = peers.new_target(luns=(1, 2), chap=("opuser", "Operator-Secret-1"))
    info = {"driver_volume_type": "iscsi", "data": {
        "target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1,
        "auth_method": "CHAP", "auth_username": "opuser", "auth_password": "Operator-Secret-1"}}
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
    p = xenvol(served, "--json", "list", "--vm", "vm-3")
    assert [a["device"] for a in json.loads(p.stdout)] == ["xvdc"]
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
    assert [line.split()[-1] for line in p.stdout.splitlines()[2:]] == ["1.0"] * 3
    p = xenvol(served, "--json", "drivers", "--host", "xs02")
    assert "iscsi" in [d["driver_volume_type"] for d in list(json.loads(p.stdout).values())[0]["drivers"]]


def test_exit_codes_and_messages(served, peers, tmp_path):
    iqn = peers.new_target(luns=(1,))
    good = {"driver_volume_type": "iscsi", "data": {"target_portal": peers.iscsi.portal,
                                                    "target_iqn": iqn, "target_lun": 1}}
    bad = json.loads(json.dumps(good))
    bad["data"]["target_lun"] = "x"
    p = xenvol(served, "attach", "vm-1", "-", stdin=json.dumps(bad))
    assert p.returncode == 2 and "data.target_lun" in p.stderr
    p = xenvol(served, "attach", "vm-1", "-", stdin="{oops")
    assert p.returncode == 2 and "not valid JSON" in p.stderr
    p = xenvol(served, "attach", "nobody", "-", stdin=json.dumps(good))
    assert p.returncode == 3 and "no VM" in p.stderr
    wrong = json.loads(json.dumps(good))
    wrong["data"]["target_portal"] = "127.0.0.1:3999"
    p = xenvol(served, "--json", "attach", "vm-1", "-", stdin=json.dumps(wrong))
    assert p.returncode == 4
    assert json.loads(p.stdout)["details"]["sm_code"] == "141"
    p = xenvol(served, "attach", "vm-1", "-", stdin=json.dumps(good), password=False)
    assert p.returncode == 2 and "XENVOL_PASSWORD" in p.stderr  # no prompt without a terminal
    pw = tmp_path / "pw"
    pw.write_text(served["password"] + "\n")
    p = xenvol(served, "--password-file", str(pw), "list", password=False)
    assert p.returncode == 0
    os.unlink(os.path.join(served["state_dir"], "h1", "etc/xapi.d/plugins/xenvol"))
    p = xenvol(served, "drivers", "--host", "xs02")
    assert p.returncode == 5 and "supplemental pack" in p.stderr
    p = xenvol(served, "list", env_extra={"XENVOL_URL": ""})
    assert p.returncode == 2 and "--url" in p.stderr


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
