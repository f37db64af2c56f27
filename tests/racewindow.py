"""Race windows held open with the simulator's per-caller latency: a call run in the
background, the wait until it has reached one of its XAPI calls, and a race that runs another
call in that window. The tests then assert on pool state."""

import threading

from conftest import PluginError


def in_background(fn):
    """Runs fn() in a thread; returns (thread, out), where out["r"] becomes what fn returned
    or the PluginError it raised."""
    out = {}

    def run():
        try:
            out["r"] = fn()
        except PluginError as e:
            out["r"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for_call(pool, method, t, out, n=1):
    """Waits until the plugin has made its nth `method` XAPI call (the simulator counts the
    calls by caller); fails with what the background call answered if it ended first."""
    while pool.admin.counts().get(method, {}).get("plugin", 0) < n:
        assert t.is_alive(), out
        t.join(0.01)


def race(pool, latencies, wait_in, fn, meanwhile):
    """fn() runs in the background with the plugin's XAPI calls in `latencies` ({method:
    seconds}) slowed down (the simulator's counts and rules cleared first); once it has made its
    `wait_in` call, meanwhile() runs. Returns (what fn returned or the PluginError it raised,
    what meanwhile returned). The latencies stay until the test clears them."""
    pool.admin.clear()
    for method, seconds in latencies.items():
        pool.admin.set_latency(method, seconds, "plugin")
    t, out = in_background(fn)
    wait_for_call(pool, wait_in, t, out)
    other = meanwhile()
    t.join(120)
    return out["r"], other
