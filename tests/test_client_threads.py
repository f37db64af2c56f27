"""One xenvol.Client shared by many threads (each caller told what the pool holds), every
transport failure a xenvol error naming the op id, and the op id in results and the log."""

import http.client
import logging
import os
import threading
import uuid
from urllib.parse import urlsplit

import pytest

import xenvol
from xenvol import errors

THREADS = 12


def file_volumes(pool, n):
    """n file volumes every host has (an SR is plugged on the VM's host and the master)."""
    out = []
    for _ in range(n):
        vdi = str(uuid.uuid4())
        for host in pool.sim.hosts:
            d = os.path.join(host.root, "var/lib/xenvol/volumes")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
                fh.truncate(1 << 20)
        out.append(
            {
                "driver_volume_type": "file",
                "data": {"path": "/var/lib/xenvol/volumes", "vdi_uuid": vdi},
            }
        )
    return out


def xenvol_vbds(xapi):
    return set(
        r["uuid"]
        for r in xapi.VBD.get_all_records().values()
        if r["other_config"].get("xenvol") == "true"
    )


def in_threads(fn, items):
    """fn(item) in one thread per item, all started together: [(result or exception)]."""
    results = [None] * len(items)
    start = threading.Barrier(len(items))

    def run(i):
        start.wait()
        try:
            results[i] = fn(items[i])
        except BaseException as e:  # what the caller was told, whatever it is
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_one_client_many_threads(ppool):
    xapi = ppool.session().xenapi
    # Calls overlap inside dom0 and on the wire (the window held open, not raced).
    ppool.admin.set_latency("VBD.create", 0.3, "plugin")
    vms = ["vm-1", "vm-2", "vm-3", "vm-4"]
    work = list(zip(file_volumes(ppool, THREADS), [vms[i % 4] for i in range(THREADS)]))
    with xenvol.Client(ppool.url, "root", ppool.info["password"], verify_tls=False) as c:
        told = in_threads(lambda w: c.attach(w[0], w[1]), work)
        bad = [r for r in told if not isinstance(r, xenvol.Attachment)]
        # Anything that is not an attachment is a xenvol error naming its op id.
        assert all(isinstance(r, errors.XenvolError) and r.details["op_id"] for r in bad), bad
        attached = [r for r in told if isinstance(r, xenvol.Attachment)]
        assert len(attached) == THREADS, bad  # nothing here makes an attach fail
        assert set(a.vbd_uuid for a in attached) == xenvol_vbds(xapi)
        assert len(set(a.op_id for a in attached)) == THREADS
        assert len(set(attached)) == THREADS  # hashable records, one per volume
        listed = c.attachments()
        assert set(a.vbd_uuid for a in listed) == xenvol_vbds(xapi)
        told = in_threads(lambda a: c.detach(attachment=a), attached)
        assert all(isinstance(r, list) and len(r) == 1 for r in told), told
        assert [r[0].vbd_uuid for r in told] == [a.vbd_uuid for a in attached]
        assert xenvol_vbds(xapi) == set()


def test_transport_failures_are_xenvol_errors_with_the_op_id(ppool, caplog):
    with xenvol.Client(ppool.url, "root", ppool.info["password"], verify_tls=False) as c:
        with caplog.at_level(logging.INFO, logger="xenvol"):
            c.attachments(op_id="op-listing-1")
        assert "attachments: op_id=op-listing-1" in caplog.text
        # This thread's connection left mid-request: http.client refuses the next one.
        transport = c._link.transport
        conn = transport.make_connection(urlsplit(ppool.url).netloc)
        conn.putrequest("POST", "/")
        with pytest.raises(errors.ConnectionFailed) as e:
            c.attachments(op_id="op-listing-2")
        assert e.value.op_id == "op-listing-2" and "CannotSendRequest" in e.value.message
        assert isinstance(e.value.__context__, http.client.CannotSendRequest)
        # ... and the next call has a new connection.
        assert c.attachments() == []
        # A changing call on a broken connection: named by its op id; the same call again
        # (a new connection) returns its result.
        conn = transport.make_connection(urlsplit(ppool.url).netloc)
        conn.putrequest("POST", "/")
        vdi = str(uuid.uuid4())
        with pytest.raises(errors.ConnectionFailed) as e:
            c.detach(vdi=vdi, op_id="op-detach-1")
        assert e.value.op_id == "op-detach-1" and "op_id=op-detach-1" in e.value.message
        assert c.detach(vdi=vdi, op_id="op-detach-1") == []
