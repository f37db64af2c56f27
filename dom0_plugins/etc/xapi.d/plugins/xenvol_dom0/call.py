"""One plugin call's view of XAPI: the plugin's own local session, this host, settings, and
the operation it runs (its id, journal, cancel mark and progress). The operation's life (kept
results, the recovery sweep, its journal opened and closed) is entry.run's."""

import contextlib
import os
import threading
import time

import XenAPI

from . import journal, log, settings
from .errors import CANCELLED, XenvolError, from_xapi
from .ids import random_uuid
from .marks import OP, STEP
from .version import VERSION

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict  # noqa: F401

NULL = "OpaqueRef:NULL"
# Progress goes to the caller's task only for calls that last: the first update after this
# many seconds, then at most one per PROGRESS_EVERY.
PROGRESS_AFTER = 1.0
PROGRESS_EVERY = 1.0
TASK_OP_KEY = OP
TASK_STEP_KEY = STEP


class Op:
    """The operation this plugin process runs (xapi execs one process per call)."""

    def __init__(self, op_id, fn):
        self.op_id = op_id
        self.fn = fn
        self.journal = None
        self.started = time.time()
        self.progress = None  # type: Any
        self.task = None
        self.known_secrets = {}  # type: Dict[str, str]  # uuid -> value, as read by the call
        # Set once the call is past cancelling (a detach that began on a disk: nothing
        # re-plugs it): a cancel mark is then ignored and the call goes on to its end.
        self.irrevocable = ""


# The operation of this process (xapi execs one process per call), set by runner.run before
# the function runs: a plugin function is fn(session, args), and its Call finds it here.
CURRENT = [Op("none", "none")]
INVENTORY = "/etc/xensource-inventory"


def _inventory_uuid():
    """This host's uuid as dom0's inventory has it (INSTALLATION_UUID): no XAPI call."""
    try:
        with open(INVENTORY) as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "INSTALLATION_UUID":
                    return value.strip("'\"") or None
    except OSError:
        pass
    return None


_HOSTS = {}  # type: Dict[str, Any]


@contextlib.contextmanager
def local_session():
    """A session of our own for the whole plugin call, logged out at its end.

    The caller's session only authenticated the call (xapi checked it before exec'ing us); it
    may be logged out, or its client gone, while we work, and every step and rollback would
    then fail. So the plugin logs in as dom0's local superuser over the host's unix socket,
    which xapi trusts without a password (xen-api ocaml/xapi/xapi_session.ml
    login_with_password, preauth root), as xen-api's own pool_update.apply plugin does."""
    session = XenAPI.xapi_local()
    session.xenapi.login_with_password("root", "", VERSION, "xenvol")
    try:
        yield session
    finally:
        try:
            session.xenapi.session.logout()
        except Exception:  # gone already (xapi restarted): nothing left to log out
            pass


class Call:
    def __init__(self, session):
        self.session = session
        self.x = session.xenapi
        if session._session not in _HOSTS:
            host = self.x.session.get_this_host(session._session)
            _HOSTS[session._session] = (host, _inventory_uuid() or self.x.host.get_uuid(host))
        self.host, self.host_uuid = _HOSTS[session._session]
        self.settings = settings.load()
        self.op = CURRENT[0]
        self.vm_records = {}  # VM ref -> the record read for this call
        self.records = {}  # VDI ref -> its record as last read by this call
        self.uuids = {}  # SR ref -> uuid
        self.sr_records = {}  # SR ref -> its record as read by this call
        self.vbd_records = {}  # VBD ref -> its record as read by this call
        self.vdi_vbds = {}  # VDI ref -> {VBD ref: record}, read under the VM's lock
        self.vm_vbds = {}  # VM ref -> {VBD ref: record}, read under the VM's lock
        self.secret_values = {}  # secret uuid -> value, of the secrets the call was given

    def do(self, doing, fn, *args):
        """Call XAPI; a failure becomes a xenvol error saying what we were doing."""
        try:
            return fn(*args)
        except XenAPI.Failure as f:
            raise from_xapi(f, doing) from None

    def find(self, cls, uuid):
        """The ref of an object by uuid, or None when there is none."""
        try:
            return getattr(self.x, cls).get_by_uuid(uuid)
        except XenAPI.Failure as f:
            if f.details[0] == "UUID_INVALID":
                return None
            raise from_xapi(f, "looking up %s %s" % (cls, uuid)) from None

    def host_pbd(self, sr, host):
        """The SR's PBD on host, or None: one filtered read, whatever the pool's size."""
        found = self.do(
            "looking up the SR's PBD",
            self.x.PBD.get_all_records_where,
            'field "SR" = "%s" and field "host" = "%s"' % (sr, host),
        )
        return sorted(found)[0] if found else None

    def this_host_pbd(self, sr):
        return self.host_pbd(sr, self.host)

    def master(self):
        """The pool master's ref: one read of the (single) pool record."""
        pools = self.do("reading the pool", self.x.pool.get_all_records)
        return list(pools.values())[0]["master"]

    @property
    def op_id(self):
        return self.op.op_id

    @property
    def journal(self):
        return self.op.journal

    def lock(self, name):
        """A dom0 lock, waited for within the operation's shared wait."""
        from .locks import Lock

        return Lock(name, max(0.0, self.wait_deadline() - time.time()))

    def wait_deadline(self):
        """Every wait of one operation (locks, leases) shares lock_timeout."""
        return self.op.started + float(self.settings["lock_timeout"])

    def checkpoint(self, doing):
        """Between steps: stop if the caller cancelled; tell a lasting call's task the step."""
        if self.journal and self.journal.cancelled():
            if self.op.irrevocable:
                log.step("cancel ignored: %s; going on to the end" % self.op.irrevocable)
            else:
                raise XenvolError(
                    CANCELLED, "cancelled by the caller before: %s" % doing, op_id=self.op_id
                )
        if self.op.progress is None:
            self.op.progress = Progress(self.session, self.op)
        self.op.progress.show(doing)


class Progress:
    """The step an operation is at, written into its caller's task (other_config
    xenvol-step) by a thread of its own: a step that lasts (one long XAPI call, an iSCSI
    PBD.plug) shows while it runs, not when the next one starts. Only for calls that last
    (from PROGRESS_AFTER on, then at most once per PROGRESS_EVERY); on the plugin's session
    over a connection of its own; best effort."""

    LOOKS = 3  # a caller without a task (a plain call) is looked for this many times

    def __init__(self, session, op):
        self.op = op
        self.step = None  # type: Any
        self.shown = None  # type: Any
        self.looks = 0
        self.changed = threading.Event()
        # The same session on another connection: xapi serves one session on many.
        self.proxy = XenAPI.xapi_local()
        self.proxy._session = session._session
        thread = threading.Thread(target=self._run, name="xenvol-progress")
        thread.daemon = True
        thread.start()

    def show(self, doing):
        self.step = doing[:200]
        self.changed.set()

    def _run(self):
        time.sleep(max(0.0, self.op.started + PROGRESS_AFTER - time.time()))
        x = self.proxy.xenapi
        while self.looks < self.LOOKS:
            step = self.step
            if step == self.shown:
                self.changed.wait()
                self.changed.clear()
                continue
            try:
                if self.op.task is None:
                    self.looks += 1
                    # The client tags its task with our op id once it has waited a little.
                    found = x.task.get_all_records_where('field "status" = "pending"')
                    for ref, rec in found.items():
                        if rec["other_config"].get(TASK_OP_KEY) == self.op.op_id:
                            self.op.task = ref
                if self.op.task is not None:
                    if TASK_STEP_KEY in x.task.get_other_config(self.op.task):
                        x.task.remove_from_other_config(self.op.task, TASK_STEP_KEY)
                    x.task.add_to_other_config(self.op.task, TASK_STEP_KEY, step)
                    self.shown = step
            except Exception:  # the task gone, the call over: progress is best effort
                self.op.task = None
            time.sleep(PROGRESS_EVERY)


@contextlib.contextmanager
def own_journal(call):
    """A journal for a function that is not journaled but may take SR leases (gc --apply,
    recover), held while it works: a lease names an operation others can check. Its id is
    one of its own, never the caller's op id (which may name another operation)."""
    op = call.op
    op.op_id = "%s-%s" % (op.fn, random_uuid())
    log.step("working as operation %s" % op.op_id)
    op.journal = journal.Journal(op.op_id, op.fn, call.host_uuid)
    try:
        yield
    finally:
        op.journal.close()
        op.journal = None


def cancel_mark(op_id):
    """Ask an operation to stop at its next step (it rolls back); True when it is running.
    One not running yet (its request still on the way) is marked too, and stops before its
    first step; gc removes the mark of one that never comes."""
    journal.ensure_dir()
    with open(journal.cancel_path(op_id), "w"):
        pass
    return os.path.exists(journal.path_of(op_id))
