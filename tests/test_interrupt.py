"""Ctrl-C means cancel: a real SIGINT while an attach is under way (the window held open by
the simulator's latency) cancels it by its op id over a fresh connection, waits for the
rollback and says so; the pool is left as it was. The CLI off a terminal (the sync path) and
on one (the task path, with progress), and the library."""

import glob
import json
import os
import pty
import signal
import subprocess
import threading
import time

import pytest
import XenAPI

import xenvol
from conftest import PluginError, plugin
from test_cli import BIN, served  # noqa: F401  (the served fixture)
from test_plugin_session import file_volume_in

SLOW = 3.0  # seconds the plugin's PBD.plug takes: the window the interrupt lands in


def file_volume(state_dir):
    """A file volume on every host of the simulator under state_dir."""
    return file_volume_in(glob.glob(os.path.join(state_dir, "h*")))


def running(state_dir, timeout=60):
    """Wait (bounded) until an operation has journaled a change on some host (a journal
    with only its header may be the master's, answering WRONG_HOST)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in glob.glob(os.path.join(state_dir, "h*/var/lib/xenvol/ops/*.json")):
            try:
                with open(path) as fh:
                    if '"step"' in fh.read():
                        return
            except OSError:
                pass  # ended meanwhile
        time.sleep(0.05)
    raise AssertionError("no operation started")


def session(url, password):
    s = XenAPI.Session(url)
    s.login_with_password("root", password, "2.21", "tests")
    return s


def xenvol_objects(x):
    vbds = [r for r in x.VBD.get_all_records().values() if r["other_config"].get("xenvol")]
    srs = [r for r in x.SR.get_all_records().values() if r["other_config"].get("xenvol-introduced")]
    return vbds, srs


def admin(url, method, *args):
    import xmlrpc.client

    r = getattr(xmlrpc.client.ServerProxy(url), "xapisim." + method)(*args)
    assert r["Status"] == "Success", r


@pytest.mark.parametrize("terminal", [False, True], ids=["script", "terminal"])
def test_cli_interrupt_cancels_and_rolls_back(served, tmp_path, terminal):  # noqa: F811
    state_dir = str(tmp_path / "pool")
    path = tmp_path / "vol.json"
    path.write_text(json.dumps(file_volume(state_dir)))
    admin(served["url"], "set_latency", "PBD.plug", SLOW, "plugin")
    env = dict(
        os.environ,
        XENVOL_URL=served["url"],
        XENVOL_USERNAME="root",
        XENVOL_PASSWORD=served["password"],
    )
    master = slave = None
    if terminal:
        master, slave = pty.openpty()  # stderr a terminal: progress, the task path
    proc = subprocess.Popen(
        [os.path.join(BIN, "xenvol"), "attach", "vm-3", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=slave if terminal else subprocess.PIPE,
    )
    try:
        running(state_dir)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if terminal:
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        os.close(master)
    text = err.decode("utf-8", "replace")
    assert proc.returncode == 130, text
    assert "attach_volume cancelled: it stopped and rolled back (op id " in text, text
    assert "Traceback" not in text
    s = session(served["url"], served["password"])
    try:
        assert xenvol_objects(s.xenapi) == ([], [])
    finally:
        s.xenapi.session.logout()


def test_help_says_what_ctrl_c_does():
    p = subprocess.run(
        [os.path.join(BIN, "xenvol"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert "Ctrl-C" in p.stdout and "cancel" in p.stdout and "xenvol list" in p.stdout


def test_library_interrupt_cancels(ppool):
    state_dir = ppool.state_dir
    info = file_volume(state_dir)
    ppool.admin.set_latency("PBD.plug", SLOW, "plugin")
    main = threading.main_thread().ident

    def interrupt():
        running(state_dir)
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=interrupt)
    with xenvol.Client(ppool.url, "root", ppool.info["password"], verify_tls=False) as c:
        t.start()
        with pytest.raises(xenvol.errors.Cancelled) as e:
            c.attach(info, "vm-2", op_id="op-ctrl-c")
        t.join(60)
        assert e.value.outcome == "rolled back" and e.value.op_id == "op-ctrl-c"
        assert e.value.exit_code == 130
        assert c.attachments() == []
    assert xenvol_objects(ppool.session().xenapi) == ([], [])


def test_a_cancel_that_arrives_before_the_operation_stops_it(ppool):
    """The interrupt can land while the request is still on its way to dom0: the cancel
    marks the op id, and the operation stops before its first step."""
    xapi = ppool.session().xenapi
    host = ppool.host(0)
    out = plugin(xapi, host, "cancel", operation="op-early")
    assert out["state"] == "not running"
    with pytest.raises(PluginError) as e:
        plugin(
            xapi,
            host,
            "connect_volume",
            connection_info=file_volume(ppool.state_dir),
            op_id="op-early",
        )
    assert e.value.code == "XENVOL_CANCELLED"
    assert xenvol_objects(xapi) == ([], [])
    assert not glob.glob(os.path.join(host.root, "var/lib/xenvol/ops/op-early*"))
