"""dom0 locks: xapi runs plugin calls in parallel, so calls on one SR or VM take a flock.

The lock is the open file description, so it dies with the process: no stale lock can
outlive a crashed call. The file names what it guards, for an operator looking at it."""

import errno
import fcntl
import os
import time

from . import paths
from .errors import BUSY, XenvolError


class Lock:
    def __init__(self, name, timeout):
        self.name = name
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        d = paths.lock_dir()
        if not os.path.isdir(d):
            try:
                os.makedirs(d)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
        self.fd = os.open(os.path.join(d, self.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + self.timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.time() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise XenvolError(
                    BUSY, "another xenvol call holds %s; try again" % self.name, lock=self.name
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, ("%d\n" % os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
