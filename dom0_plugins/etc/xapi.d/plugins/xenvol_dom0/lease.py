"""A pool-wide lock on one SR, for the steps that must not interleave across hosts: an SR's
set-up (introduce, PBD create and plug) and its release (the users check, then unplug and
forget, or this host's PBD removed). It is held only for those steps, never while a call
scans or makes its VBD: a connecting call that finds the SR up takes no lease, and once its
VBD or connection claim exists it waits for any lease held then to go (wait_free) and checks
that the SR and this host's PBD are still there (storage.in_use), so a release that began
before the claim existed and missed it makes the call roll back and try again.

dom0 flocks only serialise calls on one host. Across hosts, XAPI itself is the arbiter:
SR.add_to_other_config fails with MAP_DUPLICATE_KEY when the key exists, which makes it an
atomic test-and-set. The value names the operation: <host uuid>/<op id>/<pid>/<time>, and
the operation's journal records the lease before it is taken.

Every lease names a live operation that others can check: the process taking it holds that
operation's journal (its own, flocked from before the lease until after its release; or the
dead one it is recovering), so gc and recover take leases under a journal of their own too.
A caller that meets a lease asks whether its operation is alive, and never waits out a dead
one: on this host, the operation's journal says (dead: recovered at once, which drops the
lease); on another host, a host that left the pool or is not live (host_metrics.live) holds
nothing, else that host's plugin is asked (`recover`: it rolls its dead operation back and
answers whether it is alive). A named lease is never broken by its age: hosts' clocks need
not agree, and an operation may outlast any bound (it waits for locks, SM calls). Only a
lease in no known form (not naming an operation) ages out after lease_stale_after seconds,
as this host's clock reads the time in it."""

import json
import os
import time

import XenAPI

from . import journal, log, recovery
from .call import NULL
from .errors import BUSY, INTERNAL_ERROR, XenvolError, from_xapi
from .marks import LEASE
from .undo import compensation

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict  # noqa: F401

KEY = LEASE
# How long a verdict of "alive" from another host is trusted before asking again.
ASK_EVERY = 2.0


class Lease:
    def __init__(self, call, sr):
        self.call = call
        self.sr = sr
        self.value = "%s/%s/%d/%d" % (call.host_uuid, call.op_id, os.getpid(), int(time.time()))
        self.held = False

    def acquire(self):
        """Take the lease, waiting while a live operation holds it."""
        if self.call.journal is None and self.call.op_id not in journal.RECOVERING:
            # Others could not tell this operation alive, and would break its lease.
            raise XenvolError(INTERNAL_ERROR, "an SR lease taken with no journal to name")
        if self.call.journal:
            self.call.journal.lease(
                self.call.uuids.get(self.sr) or self.call.x.SR.get_uuid(self.sr), self.value
            )
        self._wait(take=True)
        self.held = True
        return self

    def wait_free(self):
        """Wait until no live operation holds the lease, without taking it; returns the SR's
        record as read with no lease on it (a forgotten SR fails HANDLE_INVALID)."""
        return self._wait(take=False)

    def _wait(self, take):
        x = self.call.x
        stale = float(self.call.settings["lease_stale_after"])
        deadline = self.call.wait_deadline()
        delay = 0.02
        verdicts = {}  # type: Dict[str, float]
        while True:
            if take:
                try:
                    x.SR.add_to_other_config(self.sr, KEY, self.value)
                    return None
                except XenAPI.Failure as f:
                    if f.details[0] != "MAP_DUPLICATE_KEY":
                        raise from_xapi(f, "locking the SR") from None
                holder = x.SR.get_other_config(self.sr).get(KEY, "")
            else:
                try:
                    rec = x.SR.get_record(self.sr)
                except XenAPI.Failure as f:
                    raise from_xapi(f, "reading the SR") from None
                holder = rec["other_config"].get(KEY, "")
                if not holder:
                    return rec
            if holder and _dead(self.call, holder, verdicts):
                log.warning("breaking the SR lease of a dead operation", holder=holder)
                remove_if(self.call, self.sr, holder)
                continue
            if holder and parse(holder) is None and age(holder) > stale:
                log.warning("breaking a stale SR lease", holder=holder)
                remove_if(self.call, self.sr, holder)
                continue
            if time.time() >= deadline:
                raise XenvolError(
                    BUSY,
                    "another xenvol call holds SR %s (%s); try again"
                    % (x.SR.get_uuid(self.sr), holder),
                    lock=KEY,
                    holder=holder,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def release(self):
        """Give the lease back; an SR forgotten meanwhile has nothing to give back."""
        if not self.held:
            return
        # Nobody breaks the lease of a live operation (this one), so it is still ours:
        # removed without reading it first (one call, not two).
        for attempt in range(3):
            try:
                self.call.x.SR.remove_from_other_config(self.sr, KEY)
                break
            except XenAPI.Failure as f:
                if f.details[0] == "HANDLE_INVALID":
                    break
                if attempt == 2:
                    log.warning("could not give back the SR lease; the next caller breaks it")
                time.sleep(0.05)
        self.held = False


def remove_if(call, sr, value):
    try:
        if call.x.SR.get_other_config(sr).get(KEY) == value:
            call.x.SR.remove_from_other_config(sr, KEY)
    except XenAPI.Failure:
        pass


@compensation(recovery.DROP_LEASE)
def drop(call, sr_uuid, value):
    """Remove a dead operation's lease from an SR, if it is still there (a recovery drops the
    leases the dead operation's journal names)."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        remove_if(call, sr, value)


def parse(holder):
    """(host uuid, op id) of a lease value, or None for a form without an operation."""
    parts = holder.split("/")
    if len(parts) != 4:
        return None
    return parts[0], parts[1]


def age(holder):
    try:
        return time.time() - int(holder.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return float("inf")


def _dead(call, holder, verdicts):
    named = parse(holder)
    if named is None:
        return False
    host_uuid, op_id = named
    if host_uuid == call.host_uuid:
        if op_id in journal.RECOVERING:
            return True
        # The journal exists from before the lease until after its release.
        return recovery.recover(call, journal.path_of(op_id)) in (
            "gone",
            "recovered",
            "failed",
            "damaged",
        )
    asked = verdicts.get(holder)
    if asked is not None and time.time() - asked < ASK_EVERY:
        return False
    alive = operation_alive(call, host_uuid, op_id)
    if alive:
        verdicts[holder] = time.time()
    return alive is False


def operation_alive(call, host_uuid, op_id, probe=False):
    """True, False, or None (cannot tell) for an operation of another host. Its plugin
    rolls the operation back if it is dead, unless probe."""
    x = call.x
    host = call.find("host", host_uuid)
    if host is None:
        return False  # the host left the pool
    try:
        metrics = x.host.get_metrics(host)
        if metrics != NULL and not x.host_metrics.get_live(metrics):
            return False
    except XenAPI.Failure:
        pass
    try:
        args = {"operation": op_id}
        if probe:
            args["probe"] = "true"
        out = x.host.call_plugin(host, "xenvol", "recover", args)
    except XenAPI.Failure as f:
        if f.details[0] == "HOST_OFFLINE":
            return False
        return None
    try:
        return bool(json.loads(out).get("alive"))
    except (ValueError, AttributeError):
        return None
