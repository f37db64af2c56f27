"""Start a real GlusterFS server (Debian glusterfs-server's glusterd) for the tests.

glusterd listens on port 24007 of `address`, so run it only inside the private network
namespace (tools/in-private-netns). glusterd refuses bricks on localhost/127.0.0.1, hence
127.0.0.2. Its working, run and log directories and CLI socket are under `workdir`
(glusterd.vol options). glusterd and the gluster CLI also write a few fixed paths under
/var/lib/glusterd and /var/log/glusterfs (geo-replication template, ss_brick), so both run in
a mount namespace of their own where those two are bind mounts of directories under
`workdir`. Bricks are plain directories (`volume create ... force`); the brick daemons
glusterd spawns are stopped by the PIDs in their pid files, then glusterd by its own."""

import os
import shutil
import signal
import socket
import subprocess
import time

from . import gfapi_client, process
from .gfapi_client import GlusterError

_VOL = """volume management
    type mgmt/glusterd
    option working-directory {w}/lib
    option run-directory {w}/run
    option logging-directory {w}/log
    option glusterd-sockfile {w}/run/glusterd.socket
    option transport-type socket
    option transport.address-family inet
    option transport.socket.bind-address {address}
    option transport.socket.listen-port {port}
    option ping-timeout 0
    option event-threads 1
end-volume
"""

# The machine's glusterd paths the daemon writes regardless of its options.
_FIXED = (("/var/lib/glusterd", "var-lib"), ("/var/log/glusterfs", "var-log"))


class Server:
    def __init__(self, workdir, address="127.0.0.2", port=gfapi_client.GLUSTERD_PORT):
        self.workdir = os.path.abspath(workdir)
        self.address = address
        self.port = port
        self.proc = None
        self.clients = {}

    @property
    def socket(self):
        return os.path.join(self.workdir, "run", "glusterd.socket")

    def start(self, timeout=30.0):
        for tool in ("glusterd", "gluster", "glusterfsd", "unshare", "nsenter"):
            if not shutil.which(tool):
                raise GlusterError("%s is not installed (Debian glusterfs-server)" % tool)
        gfapi_client.lib()
        for d in ("lib", "run", "log", "bricks") + tuple(name for _p, name in _FIXED):
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        vol = os.path.join(self.workdir, "glusterd.vol")
        with open(vol, "w") as fh:
            fh.write(_VOL.format(w=self.workdir, address=self.address, port=self.port))
        binds = " && ".join(
            "mount --bind %s %s" % (os.path.join(self.workdir, name), path) for path, name in _FIXED
        )
        log = open(os.path.join(self.workdir, "glusterd.out"), "ab")
        self.proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                binds + ' && exec glusterd -N -f "$1" -l "$2" -p "$3"',
                "glusterd",
                vol,
                os.path.join(self.workdir, "log", "glusterd.log"),
                os.path.join(self.workdir, "run", "glusterd.pid"),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise GlusterError(
                    "glusterd exited with %s; see %s" % (self.proc.returncode, self.workdir)
                )
            if (
                os.path.exists(self.socket)
                and self._listening()
                and self.cli("volume", "list", check=False).returncode == 0
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise GlusterError("glusterd was not ready within %ss; see %s" % (timeout, self.workdir))

    def _listening(self):
        try:
            socket.create_connection((self.address, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def cli(self, *args, check=True):
        """The gluster CLI against this glusterd's socket, logging under workdir; it runs in
        glusterd's mount namespace, as it too writes under /var/lib/glusterd."""
        assert self.proc is not None, "glusterd is not running"
        p = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.proc.pid),
                "-m",
                "gluster",
                "--mode=script",
                "--glusterd-sock=" + self.socket,
                "--log-file=" + os.path.join(self.workdir, "log", "cli.log"),
            ]
            + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if check and p.returncode != 0:
            raise GlusterError("gluster %s: %s" % (" ".join(args), p.stdout.strip()))
        return p

    def add_volume(self, name):
        """A started single-brick volume on a directory under workdir."""
        brick = os.path.join(self.workdir, "bricks", name)
        os.makedirs(brick, exist_ok=True)
        self.cli("volume", "create", name, "%s:%s" % (self.address, brick), "force")
        self.cli("volume", "start", name)
        deadline = time.time() + 30
        while name not in self.clients:
            try:
                self.clients[name] = gfapi_client.Volume(
                    [self.address],
                    name,
                    os.path.join(self.workdir, "log", "gfapi-%s.log" % name),
                    port=self.port,
                )
            except gfapi_client.GlusterError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        return self

    def client(self, volume):
        """A gfapi client of `volume`, to lay out SR directories and VHD files through the
        volume (a file written straight into a brick has no gfid: gluster would not serve it)."""
        return self.clients[volume]

    def _brick_pids(self):
        pids = []
        vols = os.path.join(self.workdir, "run", "vols")
        for root, _dirs, files in os.walk(vols):
            for f in files:
                if f.endswith(".pid"):
                    try:
                        with open(os.path.join(root, f)) as fh:
                            pids.append(int(fh.read().strip()))
                    except (OSError, ValueError):
                        pass
        return pids

    def stop(self):
        for c in self.clients.values():
            c.close()
        self.clients = {}
        # Bricks are daemons glusterd forked (re-parented away from us): their pid files
        # under run/vols name them; each is checked to be a glusterfsd of this workdir.
        pids = []
        for pid in self._brick_pids():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if (
                argv
                and argv[0].endswith(b"glusterfsd")
                and any(self.workdir.encode() in a for a in argv)
            ):
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
        deadline = time.time() + 10
        for pid in pids:
            while _running(pid) and time.time() < deadline:
                time.sleep(0.05)
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        process.stop(self.proc)
        self.proc = None


def _running(pid):
    """Alive and not a zombie (a brick's parent is not us: it is reaped elsewhere)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
