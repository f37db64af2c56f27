"""A pool-wide lock on one SR, for the steps that must not interleave across hosts.

dom0 flocks only serialise calls on one host. Across hosts, XAPI itself is the arbiter:
SR.add_to_other_config fails with MAP_DUPLICATE_KEY when the key exists, which makes it an
atomic test-and-set. The holder writes who it is and when; a lease older than
lease_stale_after seconds is taken to belong to a crashed call and is broken."""
import os
import time

import XenAPI

from . import log
from .errors import BUSY, XenvolError, from_xapi

KEY = "xenvol-lease"


class Lease(object):
    def __init__(self, call, sr):
        self.call = call
        self.sr = sr
        self.value = "%s/%d/%d" % (call.host_uuid, os.getpid(), int(time.time()))
        self.held = False

    def acquire(self):
        x = self.call.x
        timeout = float(self.call.settings["lock_timeout"])
        stale = float(self.call.settings["lease_stale_after"])
        deadline = time.time() + timeout
        delay = 0.02
        while True:
            try:
                x.SR.add_to_other_config(self.sr, KEY, self.value)
                self.held = True
                return self
            except XenAPI.Failure as f:
                if f.details[0] != "MAP_DUPLICATE_KEY":
                    raise from_xapi(f, "locking the SR")
            holder = x.SR.get_other_config(self.sr).get(KEY, "")
            if _age(holder) > stale:
                log.warning("breaking a stale SR lease", holder=holder)
                try:
                    x.SR.remove_from_other_config(self.sr, KEY)
                except XenAPI.Failure:
                    pass
                continue
            if time.time() >= deadline:
                raise XenvolError(BUSY, "another xenvol call holds SR %s (%s); try again"
                                  % (x.SR.get_uuid(self.sr), holder), lock=KEY)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def release(self):
        """Give the lease back; an SR forgotten meanwhile has nothing to give back."""
        if not self.held:
            return
        for attempt in range(3):
            try:
                if self.call.x.SR.get_other_config(self.sr).get(KEY) == self.value:
                    self.call.x.SR.remove_from_other_config(self.sr, KEY)
                break
            except XenAPI.Failure as f:
                if f.details[0] == "HANDLE_INVALID":
                    break
                if attempt == 2:
                    log.warning("could not give back the SR lease; it expires by itself")
                time.sleep(0.05)
        self.held = False


def _age(holder):
    try:
        return time.time() - int(holder.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return float("inf")
