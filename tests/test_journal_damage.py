"""One damaged journal file never stops a host (issue 19 §4): a journal that cannot be read
as xenvol writes it is set aside (kept for the operator, named by gc and recover with what it
describes, never run) and every call goes on; one that can be read is recovered as ever. The
plugin runs under dom0's Python 3.6 with xapi's PATH-only environment (an ASCII locale)."""

import json
import os

import pytest

from conftest import plugin
from killcheck import journals
from test_opid import state
from test_plugin_iscsi import placed
from test_plugin_session import file_volume

GONE_SR = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"  # no such SR: its release does nothing


def header(op_id, host):
    """The header of a journal of a dead process (another boot)."""
    return {
        "op": op_id,
        "fn": "attach_volume",
        "pid": 1,
        "start": "1",
        "boot": "another-boot",
        "host": host.uuid,
        "time": 1,
    }


def line(entry, raw=False):
    return (json.dumps(entry, sort_keys=True, ensure_ascii=not raw) + "\n").encode("utf-8")


def step(n, desc="introduce SR x", **extra):
    e = {"step": n, "desc": desc, "undo": "release_sr", "args": {"sr_uuid": GONE_SR}}
    e.update(extra)
    return e


def body(kind, op_id, host):
    """(bytes of a journal damaged this way, whether it can still be read)."""
    h = line(header(op_id, host))
    s1 = line(step(1, "introduce SR one"))
    return {
        "non-ascii-bytes": (h + s1 + b'{"done": 1}\xff\xfe\n', False),
        "utf8-text": (h + line(step(1, "d\u00e9crire \u2603 SR"), raw=True), True),
        "number-line": (h + s1 + b"42\n", False),
        "string-line": (h + b'"step 1"\n' + s1, False),
        "null-line": (h + s1 + b"null\n", False),
        "list-line": (h + s1 + b"[1, 2]\n", False),
        "step-without-undo": (h + line({"step": 1, "desc": "x", "args": {}}), False),
        "mixed-step-types": (h + s1 + line(step("2", "introduce SR two")), False),
        "done-of-a-string": (h + s1 + line({"done": "1"}), False),
        "torn-middle-line": (h + s1[:25] + b"\n" + line({"done": 1}), False),
        "torn-last-line": (h + s1 + s1[:30], True),
        "empty-file": (b"", False),
        "no-header": (s1 + line({"done": 1}), False),
        "empty-line": (h + b"\n" + s1, False),
        "unknown-entry": (h + s1 + line({"frobnicate": 1}), False),
    }[kind]


KINDS = [
    "non-ascii-bytes",
    "utf8-text",
    "number-line",
    "string-line",
    "null-line",
    "list-line",
    "step-without-undo",
    "mixed-step-types",
    "done-of-a-string",
    "torn-middle-line",
    "torn-last-line",
    "empty-file",
    "no-header",
    "empty-line",
    "unknown-entry",
]


def put(host, op_id, data):
    d = os.path.join(host.root, "var/lib/xenvol/ops")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, op_id + ".json"), "wb") as fh:
        fh.write(data)


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_journal_is_set_aside_and_the_host_goes_on(ppool, kind):
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    info = file_volume(host)
    before = state(ppool)
    # Met first by an attach (its sweep), by gc, and by recover.
    met = ["by-attach", "by-gc", "by-recover"]
    readable = body(kind, "x", host)[1]
    put(host, "by-attach", body(kind, "by-attach", host)[0])
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert out["plugged"] is True
    put(host, "by-gc", body(kind, "by-gc", host)[0])
    listed = plugin(xapi, host, "gc")["items"]
    put(host, "by-recover", body(kind, "by-recover", host)[0])
    recovered = plugin(xapi, host, "recover")
    if readable:
        # A journal xenvol can read is recovered as ever (its step does nothing here).
        assert journals(host) == []
        assert sorted(recovered["recovered"]) == ["by-gc", "by-recover"]
        assert recovered["damaged"] == []
        assert [i["id"] for i in listed if i["kind"] == "journal"] == ["by-gc"]
    else:
        assert journals(host) == sorted(op + ".json.damaged" for op in met)
        assert recovered["recovered"] == [] and recovered["failed"] == []
        assert sorted(d["op_id"] for d in recovered["damaged"]) == met
        assert [i["kind"] for i in listed] == ["damaged", "damaged"]
        for d in recovered["damaged"]:
            assert d["kind"] == "journal" and d["problem"]
            if kind in ("number-line", "null-line", "list-line", "mixed-step-types"):
                # What it describes, as far as it can be read: nothing guessed.
                assert d["fn"] == "attach_volume" and d["describes"][:1] == ["introduce SR one"]
    # Every call goes on: detach, connect, disconnect, gc --apply (which keeps the files).
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    conn = plugin(xapi, host, "connect_volume", connection_info=info)
    plugin(xapi, host, "disconnect_volume", sr_uuid=conn["sr_uuid"], vdi_uuid=conn["vdi_uuid"])
    applied = plugin(xapi, host, "gc", apply="true")["items"]
    damaged = [i for i in applied if i["kind"] == "damaged"]
    assert len(damaged) == (0 if readable else 3)
    assert all("done" not in i and i["action"].startswith("none") for i in damaged)
    assert len(journals(host)) == (0 if readable else 3)
    assert state(ppool) == before


def test_a_lease_of_an_operation_whose_journal_is_damaged_is_broken(ppool):
    """Its flock is free: the operation is dead, whatever its journal says; the lease it left
    is broken at once, not waited out (and nothing of the journal is run)."""
    xapi = ppool.session().xenapi
    vm_ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    out = plugin(xapi, host, "attach_volume", connection_info=file_volume(host), vm_uuid=vm_uuid)
    put(host, "lease-op", body("number-line", "lease-op", host)[0])
    sr = xapi.SR.get_by_uuid(out["sr_uuid"])
    xapi.SR.add_to_other_config(sr, "xenvol-lease", "%s/lease-op/1/1" % host.uuid)
    done = plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert [d["vbd_uuid"] for d in done["detached"]] == [out["vbd_uuid"]]
    assert journals(host) == ["lease-op.json.damaged"]
    assert state(ppool) == before
