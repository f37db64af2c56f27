"""Issue 11 with issue 10's kills: no password in dom0 argv, logs, errors, PBD device_config or
a secret left, when the plugin or the client is killed (SIGKILL) mid-attach, and on the
libvirt-style adapter path (xenvol.adapter). Real iSCSI target with CHAP."""

import json
import logging
import subprocess
import sys

import pytest

import xenvol
from conftest import state
from test_client import everything_said
from test_lifecycle import default_settings, journals, plugin_calls
from test_plugin_iscsi import ci
from xenvol import errors
from xenvol.adapter import XenVolumeDriver

CHAP = ("leak-user", "Leak-Chap-Secret-5150")


def client(pool):
    return xenvol.Client(pool.url, "root", pool.info["password"])


def secrets_holding(pool, password):
    """{uuid: other_config} of every secret whose value is the password."""
    x = pool.session().xenapi
    return dict(
        (rec["uuid"], rec["other_config"])
        for ref, rec in x.secret.get_all_records().items()
        if x.secret.get_value(ref) == password
    )


def owned(pool, password, where):
    """Every secret holding the password is a tagged client secret or a PBD's own (xapi copies
    a PBD's *_secret into one of its own: xen-api ocaml/xapi/xapi_secret.ml
    duplicate_passwds; PBD.destroy takes it, and the dead operation's journal undoes the PBD)."""
    pbd_secrets = set()
    for rec in state(pool)["PBD"].values():
        pbd_secrets.update(rec["device_config"].values())
    for uuid, other in secrets_holding(pool, password).items():
        assert other.get("xenvol") == "client" or uuid in pbd_secrets, (where, uuid, other)


def no_leak(pool, password, where, also=()):
    said = everything_said(pool) + "\n".join(str(a) for a in also)
    assert password not in said, where


def expire_client_secrets(pool):
    """Time passes for tagged client secrets (their lifetime, made 0 s), so gc sees them as
    what they are once their call is long over."""
    x = pool.session().xenapi
    for ref, rec in x.secret.get_all_records().items():
        if rec["other_config"].get("xenvol") == "client":
            x.secret.remove_from_other_config(ref, "xenvol-ttl")
            x.secret.add_to_other_config(ref, "xenvol-ttl", "0")


def test_plugin_killed_mid_attach_through_the_client_leaks_nothing(ppool, peers):
    default_settings(ppool)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = ci(peers, iqn, chap=CHAP)
    host = ppool.host(0)
    before = state(ppool)
    with client(ppool) as c:
        c.detach(attachment=c.attach(info, "vm-1"))  # the client's version check, once
        ppool.admin.clear()
        att = c.attach(info, "vm-1")
        n_calls = plugin_calls(ppool)
        c.detach(attachment=att)
        for n in range(1, n_calls + 1, 2):
            ppool.admin.clear()
            ppool.admin.kill_plugin("*", {"nth": n, "when": "after", "host": host.uuid})
            with pytest.raises(errors.XenvolError) as e:
                c.attach(info, "vm-1")
            # mid-attach: the PBD (device_config), argv and logs so far
            no_leak(ppool, CHAP[1], n, (e.value, e.value.message, json.dumps(e.value.details)))
            owned(ppool, CHAP[1], n)
            ppool.admin.clear()
            att = c.attach(info, "vm-1")
            c.detach(attachment=att)
            no_leak(ppool, CHAP[1], n)
            assert state(ppool) == before and journals(host) == [], n


def test_client_killed_mid_attach_leaks_nothing(ppool, peers):
    """The client killed while its plugin call runs (at the plugin's nth XAPI call), and the
    plugin killed at a later call: the secrets left are only tagged client secrets (the
    password never in the clear anywhere), and gc removes them once expired."""
    default_settings(ppool)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    info = ci(peers, iqn, chap=CHAP)
    host = ppool.host(0)
    before = state(ppool)
    script = (
        "import json, sys, xenvol\n"
        "c = xenvol.Client(sys.argv[1], 'root', sys.argv[2])\n"
        "c.attach(json.loads(sys.argv[3]), 'vm-1')\n"
    )
    with client(ppool) as c:
        c.detach(attachment=c.attach(info, "vm-1"))  # the client's version check, once
        ppool.admin.clear()
        att = c.attach(info, "vm-1")
        n_calls = plugin_calls(ppool)
        c.detach(attachment=att)
        for n in range(1, n_calls - 1, 4):
            proc = subprocess.Popen(
                [sys.executable, "-c", script, ppool.url, ppool.info["password"], json.dumps(info)],
                stderr=subprocess.PIPE,
                universal_newlines=True,
            )
            ppool.admin.clear()
            ppool.admin.kill_plugin("*", {"nth": n, "pid": proc.pid, "host": host.uuid})
            ppool.admin.kill_plugin("*", {"nth": n + 2, "when": "before", "host": host.uuid})
            _out, err = proc.communicate()
            assert CHAP[1] not in err, n
            no_leak(ppool, CHAP[1], n)
            owned(ppool, CHAP[1], n)
            ppool.admin.clear()
            expire_client_secrets(ppool)
            c.gc(dry_run=False)
            # What holds the password now is a PBD's own secret (the killed client's attach
            # may have completed before its plugin was killed), never a client's.
            owned(ppool, CHAP[1], n)
            assert not [o for o in secrets_holding(ppool, CHAP[1]).values() if o], n
            att = c.attach(info, "vm-1")
            c.detach(attachment=att)
            assert c.gc() == [], n
            assert secrets_holding(ppool, CHAP[1]) == {}, n
            no_leak(ppool, CHAP[1], n)
            assert state(ppool) == before, n


def test_adapter_path_leaks_no_password(ppool, peers, caplog):
    """nova's libvirt-style driver interface: success, a wrong password (the target refuses
    the login), a hostile password (refused by the client's checks) and a plugin killed
    mid-attach; the password is nowhere in argv, logs (dom0's and the client's), errors."""
    caplog.set_level(logging.DEBUG)
    iqn = peers.new_target(luns=(1,), chap=CHAP)
    before = state(ppool)
    said = []
    with client(ppool) as c:
        drv = XenVolumeDriver(c, "vm-1")
        flat = dict(ci(peers, iqn, chap=CHAP)["data"], driver_volume_type="iscsi")
        for info in (ci(peers, iqn, chap=CHAP), flat):
            out = drv.connect_volume(info, "/dev/xvdc")
            said.append(json.dumps(out))
            said.append(json.dumps(drv.disconnect_volume(info, "/dev/xvdc")))
        for password, error in (
            ("Leak-Wrong-Pass-1", errors.BackendFailure),
            ("Leak-Bad\nnode.session.auth=x", errors.InvalidInput),
        ):
            with pytest.raises(error) as e:
                drv.connect_volume(ci(peers, iqn, chap=(CHAP[0], password)), "/dev/xvdc")
            said.extend([str(e.value), repr(e.value), json.dumps(e.value.details)])
            assert password not in "\n".join(said) and "Leak-Bad" not in "\n".join(said)
            no_leak(ppool, password, "wrong password")
            no_leak(ppool, "Leak-Bad", "hostile password")
        ppool.admin.kill_plugin("VBD.plug", {"host": ppool.host(0).uuid})
        with pytest.raises(errors.XenvolError) as e:
            drv.connect_volume(ci(peers, iqn, chap=CHAP), "/dev/xvdc")
        said.extend([str(e.value), repr(e.value), json.dumps(e.value.details)])
        ppool.admin.clear()
        drv.connect_volume(ci(peers, iqn, chap=CHAP), "/dev/xvdc")
        drv.disconnect_volume(ci(peers, iqn, chap=CHAP), "/dev/xvdc")
    said.append(caplog.text)
    assert CHAP[1] not in "\n".join(said)
    no_leak(ppool, CHAP[1], "adapter")
    assert secrets_holding(ppool, CHAP[1]) == {}
    assert state(ppool) == before
