"""Test controls of the simulator: injected failures, latency, call counts, state snapshots."""

import json
import os
import subprocess
import sys
import time

import pytest

from test_sim_wire import fails


def test_fault_on_the_nth_call(pool, xapi):
    pool.admin.inject_fault("VM.get_all", ["INTERNAL_ERROR", "injected"], {"nth": 2})
    xapi.VM.get_all()
    assert fails("INTERNAL_ERROR", xapi.VM.get_all)[1] == "injected"
    xapi.VM.get_all()


def test_fault_on_every_call_and_clear(pool, xapi):
    pool.admin.inject_fault("SR.scan", ["SR_BACKEND_FAILURE_47", "", "gone", ""], {"every": True})
    sr = xapi.SR.get_all()[0]
    for _ in range(3):
        fails("SR_BACKEND_FAILURE_47", xapi.SR.scan, sr)
    pool.admin.clear()
    xapi.SR.scan(sr)


def test_fault_filtered_by_caller(pool, xapi):
    pool.admin.inject_fault(
        "VM.get_all", ["INTERNAL_ERROR", "x"], {"every": True, "caller": "plugin"}
    )
    xapi.VM.get_all()


def test_injected_fault_changes_nothing(pool, xapi):
    before = pool.admin.snapshot()
    pool.admin.inject_fault("SR.introduce", ["SR_UUID_EXISTS", "x"], {})
    fails("SR_UUID_EXISTS", xapi.SR.introduce, "", "l", "", "nfs", "", True, {})
    assert pool.admin.snapshot() == before


def test_latency(pool, xapi):
    pool.admin.set_latency("VM.get_all", 1.0)
    t = time.time()
    xapi.VM.get_all()
    assert time.time() - t >= 1.0
    t = time.time()
    xapi.SR.get_all()  # other messages are not delayed
    assert time.time() - t < 0.9


def test_counts_and_snapshot(pool, xapi):
    pool.admin.clear()
    xapi.VM.get_all()
    xapi.VM.get_all()
    assert pool.admin.counts() == {"VM.get_all": {"client": 2}}
    snap = pool.admin.snapshot()
    assert set(snap) >= {"VM", "VBD", "VDI", "SR", "PBD", "secret", "host", "pool"}
    assert "session" not in snap
    sr = xapi.SR.introduce("", "new", "", "nfs", "", True, {})
    after = pool.admin.snapshot()
    assert set(after["SR"]) - set(snap["SR"]) == {xapi.SR.get_uuid(sr)}


@pytest.mark.slow
def test_cli_serve_and_controls(tmp_path):
    env = dict(os.environ)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xapisim",
            "serve",
            "--hosts",
            "2",
            "--vms",
            "4",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:") and len(info["member_urls"]) == 1
        assert len(info["hosts"]) == 2 and info["user"] == "root" and info["password"]
        env["XAPISIM_URL"] = info["url"]

        def run(*a):
            cmd = [sys.executable, "-m", "xapisim", *a]
            return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True).stdout

        run("fault", "VM.get_all", "INTERNAL_ERROR", "boom", "--every")
        run("latency", "*", "0")
        run("latency", "VM.get_all", "0", "--caller", "plugin")
        import XenAPI

        s = XenAPI.Session(info["url"])
        s.login_with_password("root", info["password"])
        fails("INTERNAL_ERROR", s.xenapi.VM.get_all)
        counts = json.loads(run("counts"))
        assert counts["VM.get_all"] == {"client": 1}
        assert "VM" in json.loads(run("snapshot"))
        run("clear")
        assert len(s.xenapi.VM.get_all()) == 6
        s.xenapi.session.logout()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
