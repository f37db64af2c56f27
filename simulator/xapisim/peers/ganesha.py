"""Start a userspace NFS server (Debian nfs-ganesha, VFS backend) for tests and the demo.

NFSv3 needs rpcbind, which binds the machine-wide /run/rpcbind.sock; run it only inside a
private mount and network namespace. Without rpcbind, ganesha serves NFSv4 alone."""

import os
import shutil
import socket
import subprocess
import time

from . import nfs_client, process


def _only_loopback():
    return [name for _i, name in socket.if_nameindex()] == ["lo"]


class GaneshaError(Exception):
    pass


_CONF = """NFS_CORE_PARAM {{ Protocols = {protocols}; {bind}NFS_Port = {port};
  MNT_Port = {mnt_port}; Enable_NLM = false; Enable_RQUOTA = false; Mount_Path_Pseudo = true; }}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {workdir}/recov; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT_DEFAULTS {{ Access_Type = NONE; }}
{exports}
"""

_EXPORT = """EXPORT {{ Export_Id = {id}; Path = {path}; Pseudo = {pseudo}; Protocols = {protocols};
  Transports = TCP; Squash = No_Root_Squash; SecType = sys; FSAL {{ Name = VFS; }}
  CLIENT {{ Clients = {clients}; Access_Type = RW; }} }}
"""


class Server:
    def __init__(self, workdir, address="127.0.0.1", port=2049, mnt_port=20048, v3=True):
        self.workdir = os.path.abspath(workdir)
        self.address = address
        self.port = port
        self.mnt_port = mnt_port
        self.v3 = v3
        self.exports = []
        self.procs = []

    def add_export(self, pseudo, clients="127.0.0.1"):
        """Create a directory served as `pseudo`; returns its local path."""
        path = os.path.join(self.workdir, "exports", pseudo.strip("/").replace("/", "_"))
        os.makedirs(path, exist_ok=True)
        self.exports.append((pseudo, path, clients))
        return path

    @property
    def protocols(self):
        return "3, 4" if self.v3 else "4"

    def start(self, timeout=20.0):
        for tool in ("ganesha.nfsd",) + (("rpcbind",) if self.v3 else ()):
            if not shutil.which(tool):
                raise GaneshaError(
                    "%s is not installed (Debian nfs-ganesha, nfs-ganesha-vfs, rpcbind)" % tool
                )
        os.makedirs(os.path.join(self.workdir, "recov"), exist_ok=True)
        exports = "".join(
            _EXPORT.format(
                id=i + 1, path=path, pseudo=pseudo, clients=clients, protocols=self.protocols
            )
            for i, (pseudo, path, clients) in enumerate(self.exports)
        )
        conf = os.path.join(self.workdir, "ganesha.conf")
        with open(conf, "w") as fh:
            fh.write(
                _CONF.format(
                    protocols=self.protocols,
                    bind=self._bind(),
                    port=self.port,
                    mnt_port=self.mnt_port,
                    workdir=self.workdir,
                    exports=exports,
                )
            )
        if self.v3:
            os.makedirs("/run/rpcbind", exist_ok=True)
            self._spawn(["rpcbind", "-f"], "rpcbind.log")
            self._wait(
                lambda: (
                    subprocess.call(
                        ["rpcinfo", "-p", "127.0.0.1"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    == 0
                ),
                5,
                "rpcbind",
            )
        self._spawn(
            [
                "ganesha.nfsd",
                "-F",
                "-f",
                conf,
                "-L",
                os.path.join(self.workdir, "ganesha.log"),
                "-p",
                os.path.join(self.workdir, "ganesha.pid"),
            ],
            "ganesha.out",
        )
        first = self.exports[0][0] if self.exports else "/"
        self._wait(lambda: self._mountable(first), timeout, "ganesha")
        return self

    def _bind(self):
        # ganesha resolves Bind_addr with AI_ADDRCONFIG, which finds nothing in a namespace
        # that holds only loopback; there, binding every address means binding loopback.
        if self.address in ("127.0.0.1", "::1") and _only_loopback():
            return ""
        return "Bind_addr = %s; " % self.address

    def _mountable(self, export):
        try:
            nfs_client.Mount(self.address, export, 4, nfsport=self.port).close()
            if self.v3:
                nfs_client.Mount(self.address, export, 3).close()
            return True
        except nfs_client.NFSError:
            return False

    def _spawn(self, argv, logname):
        log = open(os.path.join(self.workdir, logname), "ab")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        log.close()

    def _wait(self, ready, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise GaneshaError(
                        "%s exited with %s; see %s" % (p.args[0], p.returncode, self.workdir)
                    )
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise GaneshaError("%s was not ready within %ss; see %s" % (what, timeout, self.workdir))

    def stop(self):
        for p in reversed(self.procs):
            process.stop(p)
        self.procs = []
