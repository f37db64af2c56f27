"""Every `xe host-call-plugin` example of docs/plugin-api.md, run as written through the
simulator's xe against a pool with the real iSCSI target behind it."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

DOC = os.path.join(REPO, "docs", "plugin-api.md")


def blocks():
    text = open(DOC).read()
    return [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "xe " in b]


@pytest.fixture
def doc_target(peers):
    iqn = "iqn.2026-11.org.example:vol1"
    if iqn not in peers.iscsi.targets:
        peers.iscsi.add_target(iqn)
        peers.iscsi.add_lun(iqn, 1, 16)
        peers.iscsi.require_chap(iqn, "docuser", "chap-secret-0001")
    return iqn


def test_every_example_runs(ppool, doc_target, tmp_path):
    xapi = ppool.session().xenapi
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    host = xapi.VM.get_resident_on(vm)
    subst = {"<host-uuid>": xapi.host.get_uuid(host), "<vm-uuid>": xapi.VM.get_uuid(vm)}
    # The docs say `xe`, as on a host; here that is the simulator's, installed as xapisim-xe.
    os.symlink(os.path.join(os.path.dirname(sys.executable), "xapisim-xe"), str(tmp_path / "xe"))
    env = dict(
        os.environ,
        XAPISIM_URL=ppool.url,
        XAPISIM_PASSWORD=ppool.info["password"],
        PATH=str(tmp_path) + ":" + os.environ["PATH"],
    )
    # smoke_volume's example makes its scratch volume under file_roots (the default's).
    os.makedirs(ppool.sim.host(host).path("/var/lib/xenvol/volumes"), exist_ok=True)
    before = ppool.admin.snapshot()
    ran = []
    for block in blocks():
        script = block
        for k, v in subst.items():
            script = script.replace(k, v)
        p = subprocess.run(
            ["bash", "-euc", script], env=env, capture_output=True, text=True, timeout=120
        )
        fn = re.search(r"fn=(\w+)", block).group(1)
        ran.append(fn)
        if "-1}}" in block:  # the documented error
            assert p.returncode != 0
            assert "Error code: XENVOL_INVALID_CONNECTION_INFO" in p.stderr
            assert "data.target_lun: must be from 0 to 16383 (got -1)" in p.stderr
            continue
        assert p.returncode == 0, (block, p.stderr)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        if fn == "connect_volume":
            subst["<sr-uuid>"], subst["<vdi-uuid>"] = out["sr_uuid"], out["vdi_uuid"]
        if fn == "version":
            assert out["plugin"] == "xenvol"
        if fn == "probe":
            assert out["config"]["state"] == "ok" and out["leftovers"] == []
        if fn == "smoke_volume":
            assert len(out["removed"]) == 2
        if fn == "check_config":
            assert (out["state"], out["valid"]) == ("ok", True)
    assert ran == [
        "gc",
        "version",
        "check_config",
        "list_drivers",
        "attach_volume",
        "detach_volume",
        "connect_volume",
        "extend_volume",
        "disconnect_volume",
        "list_attachments",
        "connector",
        "probe",
        "smoke_volume",
        "attach_volume",
    ]
    assert ppool.admin.snapshot() == before
