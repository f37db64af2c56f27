"""The kill-and-retry checks of the lifecycle tests (issue 10): the plugin killed by the
simulator at its nth XAPI call, then the same call again. Assertions are on pool state."""

import os

import pytest

from conftest import PluginError, plugin


def default_settings(pool):
    """The operator's defaults (lock_timeout 120 s): a dead holder that were waited out
    would fail these tests BUSY."""
    for h in pool.sim.hosts:
        path = os.path.join(h.root, "etc/xenvol/xenvol.conf")
        if os.path.exists(path):
            os.unlink(path)


def journals(host):
    d = os.path.join(host.root, "var/lib/xenvol/ops")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def plugin_calls(pool):
    return sum(c.get("plugin", 0) for c in pool.admin.counts().values())


def killed_then_retried(pool, xapi, host, fn, when, retry_fn=None, **args):
    """Run fn killed at each of its XAPI calls in turn; after each kill, the same call
    (or retry_fn) again. Yields after each retry."""
    pool.admin.clear()
    out = plugin(xapi, host, fn, **args)
    n_calls = plugin_calls(pool)
    yield "clean", out
    for n in range(1, n_calls + 1):
        killed(pool, xapi, host, fn, n, when, args)
        yield n, plugin(xapi, host, retry_fn or fn, **args)


def killed(pool, xapi, host, fn, n, when, args):
    """fn with the plugin killed (SIGKILL) before or after its nth XAPI call: it fails so."""
    pool.admin.clear()
    pool.admin.kill_plugin("*", {"nth": n, "when": when, "host": host.uuid})
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, fn, **args)
    assert e.value.code == "XENAPI_PLUGIN_FAILURE", (n, e.value.details)
    pool.admin.clear()


def release_args(xapi, host, fn, info, vm_uuid):
    """Attach (for detach_volume) or connect (for disconnect_volume) the volume; returns the
    arguments of the release fn."""
    if fn == "detach_volume":
        return {
            "vbd_uuid": plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)[
                "vbd_uuid"
            ]
        }
    plugin(xapi, host, "connect_volume", connection_info=info)
    return {"connection_info": info}


def release_each_kill(pool, xapi, host, fn, when, info, vm_uuid, check):
    """fn (detach_volume or disconnect_volume) killed at each of its calls in turn; a plain
    retry then leaves the pool as before the attach/connect: check(n) after the clean run
    ("clean") and after each retry. Returns the number of calls."""
    args = release_args(xapi, host, fn, info, vm_uuid)
    pool.admin.clear()
    plugin(xapi, host, fn, **args)
    n_calls = plugin_calls(pool)
    check("clean")
    for n in range(1, n_calls + 1):
        args = release_args(xapi, host, fn, info, vm_uuid)
        killed(pool, xapi, host, fn, n, when, args)
        plugin(xapi, host, fn, **args)  # a plain retry
        check(n)
    return n_calls
