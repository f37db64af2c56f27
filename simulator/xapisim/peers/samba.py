"""Start a real SMB server (Debian samba's smbd) for tests and the demo.

smbd listens on port 445 of 127.0.0.1, so run it only inside the private network namespace
(tools/in-private-netns). Everything it writes (passdb, locks, logs) stays under `workdir`.
SMB users map to the local root account (a username map), so no system account is added."""

import os
import shutil
import socket
import subprocess
import time

from . import process


class SambaError(Exception):
    pass


_CONF = """[global]
  server role = standalone server
  interfaces = {address}
  bind interfaces only = yes
  smb ports = {port}
  lock directory = {w}/lock
  state directory = {w}/state
  cache directory = {w}/cache
  private dir = {w}/private
  pid directory = {w}/pid
  ncalrpc dir = {w}/ncalrpc
  log file = {w}/log.smbd
  passdb backend = tdbsam:{w}/private/passdb.tdb
  username map = {w}/users.map
  map to guest = never
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2_02
{shares}"""

_SHARE = """[{name}]
  path = {path}
  read only = no
  valid users = root
"""


class Server:
    def __init__(self, workdir, address="127.0.0.1", port=445):
        self.workdir = os.path.abspath(workdir)
        self.address = address
        self.port = port
        self.shares = []
        self.users = {}
        self.proc = None

    def add_share(self, name):
        """A directory served as \\\\<address>\\<name>; returns its local path."""
        path = os.path.join(self.workdir, "shares", name)
        os.makedirs(path, exist_ok=True)
        self.shares.append((name, path))
        return path

    def add_user(self, name, password):
        self.users[name] = password
        return self

    def start(self, timeout=20.0):
        for tool in ("smbd", "smbpasswd"):
            if not shutil.which(tool):
                raise SambaError("%s is not installed (Debian samba)" % tool)
        for d in ("lock", "state", "cache", "private", "pid", "ncalrpc"):
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        conf = os.path.join(self.workdir, "smb.conf")
        with open(conf, "w") as fh:
            fh.write(
                _CONF.format(
                    address=self.address,
                    port=self.port,
                    w=self.workdir,
                    shares="".join(_SHARE.format(name=n, path=p) for n, p in self.shares),
                )
            )
        with open(os.path.join(self.workdir, "users.map"), "w") as fh:
            fh.write("root = %s\n" % " ".join(sorted(self.users)))
        # One tdbsam entry (root) carries the password; the map sends every user name to it,
        # so all configured users share the first password given.
        if self.users:
            password = self.users[sorted(self.users)[0]]
            subprocess.run(
                ["smbpasswd", "-c", conf, "-s", "-a", "root"],
                input=("%s\n%s\n" % (password, password)).encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=True,
            )
        log = open(os.path.join(self.workdir, "smbd.out"), "ab")
        # smbd signals its whole process group on exit: give it a session of its own.
        self.proc = subprocess.Popen(
            ["smbd", "-F", "--no-process-group", "-s", conf, "--debug-stdout", "-d", "1"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SambaError(
                    "smbd exited with %s; see %s" % (self.proc.returncode, self.workdir)
                )
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SambaError("smbd was not ready within %ss; see %s" % (timeout, self.workdir))

    def stop(self):
        process.stop(self.proc)
        self.proc = None
