"""`make bench`: what an attach and a detach cost, measured on the simulated pool.

Prints, per operation: wall time (median of N), XAPI calls made by the client over the network
and by the plugin over dom0's local socket, and the ratio of remote round trips to all calls
(how much of the chatter xenvol keeps inside dom0, compared with a driver that makes every call
from the compute VM as nova's did). With real peers (root, private namespace) the iSCSI path is
measured too."""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import xenvol  # noqa: E402
from conftest import Peers, plugin_pool  # noqa: E402

N = int(os.environ.get("XENVOL_BENCH_N", "20"))


def measure(pool, client, info, vm):
    times = {"attach": [], "detach": []}
    calls = {}
    for i in range(N):
        for op in ("attach", "detach"):
            pool.admin.clear()
            t = time.perf_counter()
            if op == "attach":
                att = client.attach(info, vm)
            else:
                client.detach(attachment=att)
            times[op].append(time.perf_counter() - t)
            if i == N - 1:
                counts = pool.admin.counts()
                calls[op] = (sum(c.get("client", 0) for c in counts.values()),
                             sum(c.get("plugin", 0) for c in counts.values()))
    return times, calls


def report(label, times, calls):
    for op in ("attach", "detach"):
        remote, local = calls[op]
        print("%-26s %-6s median %6.1f ms  XAPI calls: client %3d, plugin %3d  "
              "remote/all %.2f" % (label, op, 1000 * statistics.median(times[op]), remote, local,
                                   remote / float(remote + local)))


def main():
    print("xenvol bench: %d attach/detach cycles per volume type on a 2-host simulated pool" % N)
    pool = plugin_pool(hosts=2, vms=2)
    peers = None
    try:
        client = xenvol.Client(pool.url, "root", pool.info["password"])
        host = pool.host(0)
        d = os.path.join(host.root, "var/lib/bench")
        os.makedirs(d)
        vdi = str(uuid.uuid4())
        with open(os.path.join(d, vdi + ".raw"), "wb") as fh:
            fh.truncate(1 << 20)
        info = {"driver_volume_type": "file", "data": {"path": "/var/lib/bench", "vdi_uuid": vdi}}
        report("file", *measure(pool, client, info, "vm-1"))
        if os.environ.get("XENVOL_PRIVATE_NETNS") == "1" and shutil.which("tgtd"):
            peers = Peers(tempfile.mkdtemp(prefix="xs-bench-", dir="/tmp"))
            iqn = peers.new_target(luns=(1,), chap=("bench", "Bench-Chap-Secret"))
            info = {"driver_volume_type": "iscsi", "data": {
                "target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1,
                "auth_method": "CHAP", "auth_username": "bench",
                "auth_password": "Bench-Chap-Secret"}}
            report("iscsi+CHAP (real target)", *measure(pool, client, info, "vm-1"))
        else:
            print("iscsi skipped: real peers need root in a private namespace (make bench)")
        client.close()
    finally:
        if peers:
            peers.stop()
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
