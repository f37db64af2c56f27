"""How the suite runs (loaded by conftest.py): each pytest-xdist worker in a network and mount
namespace of its own, so that every worker's real peers (tgt on 3260, rpcbind and ganesha,
smbd, glusterd, their sockets under /run) are its own; and the `slow` mark `make check` leaves
out."""

import os
import shlex
import signal
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS = os.path.join(REPO, "tools", "in-private-netns")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: a test of many plugin calls or of real peers (make check leaves it out; make test"
        " runs it)",
    )
    _worker_namespaces(config)
    # A shell starts a background job (`make test &`) with SIGINT ignored, and every process
    # below inherits that; the tests that deliver a real Ctrl-C (test_interrupt) need it
    # handled, here and in the CLI processes they start.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _worker_namespaces(config):
    """Start each local xdist worker (`-n N`: tx `popen`) through tools/in-private-netns, which
    makes it a fresh namespace inside this run's. Only where this run has one: elsewhere the
    workers, like this process, skip the peer tests."""
    tx = getattr(config.option, "tx", None)
    if not tx or hasattr(config, "workerinput") or os.environ.get("XENVOL_PRIVATE_NETNS") != "1":
        return
    python = "env -u XENVOL_PRIVATE_NETNS %s %s" % (shlex.quote(NETNS), shlex.quote(sys.executable))
    config.option.tx = [
        spec + "//python=" + python if spec.split("*")[-1] == "popen" else spec for spec in tx
    ]


def pytest_itemcollected(item):
    """A test that uses the real peers is slow (their start, and the round trips to them)."""
    if "peers" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """In xdist workers the slow tests come first (the collection order is the order the
    workers are handed tests in), so that the long ones start early and short ones fill the
    end."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
