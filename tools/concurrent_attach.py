"""`make bench-concurrent`: N concurrent attaches (default 200) of the LUNs of one real iSCSI
target with CHAP, each from its own xenvol.Client, spread over four running VMs on three hosts,
then N concurrent detaches. Default plugin settings (lock_timeout 120 s).

Prints the wall time, the latency of each call (median/max), every client-side error by type
(the goal: none; a bare TimeoutError would be a bug), and whether the pool is as before. Exit
status 1 when any call failed or anything was left. Needs root in a private network namespace
(real tgt); XENVOL_CONCURRENT_N sets N, SM_TIMING=real (make bench-concurrent SM_TIMING=real)
the simulator's real SM timings (5 s iSCSI login, 2 s scan)."""

import collections
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import xenvol  # noqa: E402
from conftest import Peers, plugin_pool  # noqa: E402

N = int(os.environ.get("XENVOL_CONCURRENT_N", "200"))
TIMING = os.environ.get("SM_TIMING", "fast")
CHAP = ("bench", "Bench-Chap-Secret-200")
VMS = ("vm-1", "vm-3", "vm-5", "vm-7")  # running, on hosts 0, 1, 2, 0


def run_all(label, fn, items):
    """fn(item) in one thread per item, all released at once; (wall s, latencies, errors)."""
    latencies, errors, results = [], collections.Counter(), {}
    gate = threading.Event()
    lock = threading.Lock()

    def one(item):
        gate.wait()
        t = time.perf_counter()
        try:
            r = fn(item)
        except BaseException as e:  # counted and shown: every failure is a finding
            where = [f for f in traceback.extract_tb(e.__traceback__) if "xenvol" in f.filename]
            with lock:
                errors[
                    "%s.%s: %s%s"
                    % (
                        type(e).__module__,
                        type(e).__name__,
                        str(e).splitlines()[0][:100],
                        " (at %s:%d %s)"
                        % (os.path.basename(where[-1].filename), where[-1].lineno, where[-1].line)
                        if where
                        else "",
                    )
                ] += 1
            return
        with lock:
            latencies.append(time.perf_counter() - t)
            results[item] = r

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    start = time.perf_counter()
    gate.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    print(
        "%-7s %3d calls  wall %6.1f s  latency median %5.1f s  max %5.1f s  ok %d  errors %d"
        % (
            label,
            len(items),
            wall,
            statistics.median(latencies) if latencies else 0,
            max(latencies) if latencies else 0,
            len(latencies),
            sum(errors.values()),
        )
    )
    for what, n in sorted(errors.items()):
        print("    %3d x %s" % (n, what))
    return results, errors


def main():
    if os.environ.get("XENVOL_PRIVATE_NETNS") != "1" or not shutil.which("tgtd"):
        print("needs real peers: root in a private namespace (make bench-concurrent)")
        return 2
    peers = Peers(tempfile.mkdtemp(prefix="xs-conc-", dir="/tmp"))
    pool = plugin_pool(hosts=3, vms=8, sm_timing=TIMING)
    try:
        for h in pool.sim.hosts:  # the operator's defaults
            os.unlink(os.path.join(h.root, "etc/xenvol/xenvol.conf"))
        luns = list(range(1, N + 1))
        iqn = peers.new_target(luns=luns, chap=CHAP, size_mb=1)
        before = pool.admin.snapshot()
        print(
            "xenvol: %d concurrent attaches of LUNs of one iSCSI target (CHAP), then detaches"
            " (SM timings %s)" % (N, TIMING)
        )

        def attach(lun):
            info = {
                "driver_volume_type": "iscsi",
                "data": {
                    "target_portal": peers.iscsi.portal,
                    "target_iqn": iqn,
                    "target_lun": lun,
                    "auth_method": "CHAP",
                    "auth_username": CHAP[0],
                    "auth_password": CHAP[1],
                },
            }
            with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
                return c.attach(info, VMS[lun % len(VMS)])

        attached, errs = run_all("attach", attach, luns)

        def detach(lun):
            with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
                return c.detach(attachment=attached[lun])

        _, derrs = run_all("detach", detach, sorted(attached))
        left = pool.admin.snapshot() != before
        print("pool as before: %s" % ("no" if left else "yes"))
        return 1 if errs or derrs or left else 0
    finally:
        pool.close()
        peers.stop()
        shutil.rmtree(peers.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
