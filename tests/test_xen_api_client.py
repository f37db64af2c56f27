"""Xen Orchestra's XAPI client (npm `xen-api`, the library Xen Orchestra itself uses) against
the simulator, on both transports: system.listMethods, the object cache built from events,
host.call_plugin of xenvol, an Async call followed through its task's events, coded errors.

`make deps` installs the pinned client into a cache outside the repository
(tools/install-xen-api-client); here, in the private network namespace, npm cannot reach its
registry, so the test skips where that cache or node is missing."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import PLUGINS, REPO, Pool

INSTALLER = os.path.join(REPO, "tools", "install-xen-api-client")
SCRIPT = os.path.join(REPO, "tests", "xen_api_client.mjs")


def client_module():
    """The installed client's entry point, or pytest.skip saying why there is none."""
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    where = subprocess.run(
        [INSTALLER, "--print-dir"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.strip()
    module = os.path.join(where, "node_modules", "xen-api", "index.mjs")
    if not os.path.exists(os.path.join(where, ".installed")) or not os.path.exists(module):
        pytest.skip("npm xen-api is not in %s: run make deps (or %s)" % (where, INSTALLER))
    return module


@pytest.fixture(scope="module")
def tls_pool(tmp_path_factory):
    """A pool served over HTTPS with a self-signed certificate, as hosts are."""
    module = client_module()
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=xapisim", "-keyout", key, "-out", cert],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    pool = Pool(hosts=2, vms=4, plugins=PLUGINS, tls=(cert, key))
    pool.module = module
    yield pool
    pool.close()


def run_client(pool, transport, watch_events):
    config = {
        "url": pool.url,
        "user": pool.info["user"],
        "password": pool.info["password"],
        "transport": transport,
        "watchEvents": watch_events,
    }
    p = subprocess.run(
        ["node", SCRIPT, pool.module, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, (p.stdout, p.stderr)
    # the client warns of any failure of its event loop (console.warn('_watchEvents', …))
    assert "_watchEvents" not in p.stderr and "_refreshCachedRecords" not in p.stderr, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "failed" not in out, out
    return out


def check_common(pool, out):
    xapi = pool.session().xenapi
    assert out["status"] == "connected" and out["pool"] == xapi.pool.get_all()[0]
    assert out["master"] == "xs01" and sorted(out["hosts"]) == ["xs01", "xs02"]
    assert out["version"]["plugin"] == "xenvol"
    assert out["error"]["code"] == "HANDLE_INVALID"
    assert out["error"]["params"] == ["VM", "OpaqueRef:no-such-vm"]
    assert out["pluginError"]["code"] == "XENVOL_INVALID_ARGUMENT"


@pytest.mark.parametrize("transport", ["xml-rpc", "json-rpc"])
def test_xen_api_with_events(tls_pool, transport):
    before = tls_pool.admin.counts().get("event.from", {}).get("client", 0)
    out = run_client(tls_pool, transport, True)
    check_common(tls_pool, out)
    # event.from, not the event.next fallback the client takes where event.inject is unknown
    assert tls_pool.admin.counts()["event.from"]["client"] > before
    assert "event.next" not in tls_pool.admin.counts()
    # the object cache, built from get_all_records and event.from
    assert {"vm-1", "vm-4"} <= set(out["vms"]) and sorted(out["hosts"]) == ["xs01", "xs02"]
    assert out["asyncVersion"] == out["version"]
    assert out["asyncError"]["code"] == "UNKNOWN_XENAPI_PLUGIN_FUNCTION"
    assert out["asyncError"]["params"] == ["no_such_function"]
    assert out["asyncErrorTask"] == "failure"


@pytest.mark.parametrize("transport", ["xml-rpc", "json-rpc"])
def test_xen_api_without_events(tls_pool, transport):
    out = run_client(tls_pool, transport, False)
    check_common(tls_pool, out)
