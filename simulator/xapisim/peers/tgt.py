"""Start and drive a userspace iSCSI target (Debian tgt) for tests and the demo.

tgtd ignores SIGTERM, so it is stopped by deleting its targets and then the system, with a
SIGKILL of its own PID as the fallback. Its control socket lives in /run/tgtd, shared across
network namespaces, so each instance gets its own control number."""

import os
import shutil
import subprocess
import time


class TgtError(Exception):
    pass


class Target:
    def __init__(self, workdir, address="127.0.0.1", port=3260, control=None):
        self.workdir = workdir
        self.address = address
        self.port = port
        self.control = control if control is not None else (os.getpid() % 5000) + 100
        self.proc = None
        self.next_tid = 1
        self.targets = {}
        self.accounts = {}
        self.luns = {}  # (iqn, lun) -> (backing file, --params given), to re-create on resize

    @property
    def portal(self):
        host = "[%s]" % self.address if ":" in self.address else self.address
        return "%s:%d" % (host, self.port)

    def start(self, timeout=10.0):
        if not shutil.which("tgtd"):
            raise TgtError("tgtd is not installed (Debian package tgt)")
        os.makedirs(self.workdir, exist_ok=True)
        log = open(os.path.join(self.workdir, "tgtd.log"), "ab")
        self.proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(self.control), "--iscsi", "portal=%s" % self.portal],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TgtError(
                    "tgtd exited with %s; see %s/tgtd.log" % (self.proc.returncode, self.workdir)
                )
            if (
                subprocess.call(
                    ["tgtadm", "-C", str(self.control), "--op", "show", "--mode", "sys"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                == 0
            ):
                return self
            time.sleep(0.02)
        self.stop()
        raise TgtError("tgtd did not answer within %ss" % timeout)

    def adm(self, *args):
        cmd = ["tgtadm", "-C", str(self.control), "--lld", "iscsi"] + list(args)
        p = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        if p.returncode != 0:
            raise TgtError("tgtadm %s: %s" % (" ".join(args[:4]), p.stdout.decode().strip()))
        return p.stdout.decode()

    def add_target(self, iqn, initiators=("ALL",)):
        tid = self.next_tid
        self.next_tid += 1
        self.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
        for address in initiators:
            self.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "-I", address)
        self.targets[iqn] = tid
        return tid

    def add_lun(self, iqn, lun, size_mb=16, scsi_id=None, serial=None):
        tid = self.targets[iqn]
        path = os.path.join(self.workdir, "t%d-lun%d.img" % (tid, lun))
        with open(path, "wb") as fh:
            fh.truncate(size_mb << 20)
        self.adm(
            "--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun), "-b", path
        )
        params = []
        if scsi_id:
            params.append("scsi_id=%s" % scsi_id)
        if serial:
            params.append("scsi_sn=%s" % serial)
        self._params(tid, lun, params)
        self.luns[(iqn, lun)] = (path, params)
        return path

    def _params(self, tid, lun, params):
        if params:
            self.adm(
                "--op",
                "update",
                "--mode",
                "logicalunit",
                "--tid",
                str(tid),
                "--lun",
                str(lun),
                "--params",
                ",".join(params),
            )

    def resize_lun(self, iqn, lun, size_mb):
        """Grow a LUN as an array does: a larger backing file, then the logical unit made
        again over it (tgtd reads the backing file's size only when the unit is created; open
        sessions keep going). Its SCSI id and serial stay the same."""
        tid = self.targets[iqn]
        path, params = self.luns[(iqn, lun)]
        with open(path, "r+b") as fh:
            fh.truncate(size_mb << 20)
        self.remove_lun(iqn, lun)
        self.adm(
            "--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun), "-b", path
        )
        self._params(tid, lun, params)

    def remove_lun(self, iqn, lun):
        self.adm(
            "--op",
            "delete",
            "--mode",
            "logicalunit",
            "--tid",
            str(self.targets[iqn]),
            "--lun",
            str(lun),
        )

    def require_chap(self, iqn, user, secret):
        """Incoming CHAP: the initiator must authenticate as user/secret.

        The password reaches tgtadm's argv here; it is a test fixture's throwaway secret."""
        self._account(user, secret)
        self.adm(
            "--op", "bind", "--mode", "account", "--tid", str(self.targets[iqn]), "--user", user
        )

    def mutual_chap(self, iqn, user, secret):
        """Outgoing CHAP: the target proves itself to initiators that ask for it."""
        self._account(user, secret)
        self.adm(
            "--op",
            "bind",
            "--mode",
            "account",
            "--tid",
            str(self.targets[iqn]),
            "--user",
            user,
            "--outgoing",
        )

    def _account(self, user, secret):
        # Accounts are global to a tgtd; targets share them by name.
        if user in self.accounts:
            if self.accounts[user] != secret:
                raise TgtError("account %s already exists with another secret" % user)
            return
        self.adm("--op", "new", "--mode", "account", "--user", user, "--password", secret)
        self.accounts[user] = secret

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                for tid in self.targets.values():
                    self.adm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force")
                subprocess.call(
                    ["tgtadm", "-C", str(self.control), "--op", "delete", "--mode", "system"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=10,
                )
                self.proc.wait(timeout=5)
            except (TgtError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for suffix in ("", ".lock"):
            try:
                os.unlink("/run/tgtd/socket.%d%s" % (self.control, suffix))
            except OSError:
                pass
        self.proc = None
