"""How a plugin function is sent and waited for: a quick call as one request; a changing
call as one request whose HTTP timeout is the plugin's wait limit plus a grace, re-asked by
its op id; or, for a caller that shows progress, as a XAPI task polled until the deadline."""

import json
import socket
import time
import xmlrpc.client
from typing import Any, Callable, Dict, List, Optional, Tuple

import XenAPI

from . import errors
from .session import PoolSession
from .transport import TRANSPORT_ERRORS, request_timeout

PLUGIN = "xenvol"
# The plugin functions that change the pool carry an operation id and may last; the others
# are quick, plain calls.
ASYNC_FUNCTIONS = (
    "attach_volume",
    "detach_volume",
    "connect_volume",
    "disconnect_volume",
    "gc",
    "extend_volume",
    "prepare_host",
    "release_host",
    "reconcile",
)
# A client waits this much longer than the plugin's own waits (version()'s wait_limit) before
# it calls an outcome unknown.
WAIT_GRACE = 60.0
DEFAULT_WAIT_LIMIT = 120.0
TASK_OP_KEY = "xenvol-op"
TASK_STEP_KEY = "xenvol-step"

Args = Dict[str, str]
HostUuid = Callable[[], Optional[str]]  # the host's uuid for messages, read when needed
Progress = Callable[[str], None]


class TaskGone(Exception):
    """The plugin call's task was destroyed before its answer was read."""


def call_plugin(
    api: Any, host_ref: Optional[str], vm_ref: Optional[str], fn: str, args: Args
) -> Any:
    """One plugin request: on the VM's host through VM.call_host_plugin when vm_ref is
    given, else host.call_plugin. api: session.xenapi, or its Async."""
    if vm_ref is not None:
        return api.VM.call_host_plugin(vm_ref, PLUGIN, fn, args)
    return api.host.call_plugin(host_ref, PLUGIN, fn, args)


def run(
    ps: PoolSession,
    host_ref: Optional[str],
    vm_ref: Optional[str],
    fn: str,
    args: Args,
    limit: float,
    host_uuid: HostUuid,
    progress: Optional[Progress],
) -> str:
    """The plugin's raw answer; XenAPI.Failure as it came."""
    if fn in ASYNC_FUNCTIONS and progress is not None:
        return run_task(ps, host_ref, vm_ref, fn, args, limit, host_uuid, progress)
    if fn in ASYNC_FUNCTIONS:
        return run_sync(ps, host_ref, vm_ref, fn, args, limit, host_uuid)
    try:
        return str(call_plugin(ps.x, host_ref, vm_ref, fn, args))
    except TRANSPORT_ERRORS as e:
        # A quick call (it changes nothing) unanswered: never a bare TimeoutError.
        uuid = host_uuid()
        raise errors.ConnectionFailed(
            "%s on host %s: no answer from XAPI (%s)" % (fn, uuid, e), host=uuid
        ) from None


def run_sync(
    ps: PoolSession,
    host_ref: Optional[str],
    vm_ref: Optional[str],
    fn: str,
    args: Args,
    limit: float,
    host_uuid: HostUuid,
) -> str:
    """A changing call as one plain request, whose HTTP timeout is the plugin's own wait
    limit plus a grace: no poll, no task to destroy. A request that times out is asked again
    with the same op id (the plugin answers with the first run's result, or waits for it)
    until the wait limit is spent."""
    op_id = args["op_id"]
    deadline = time.monotonic() + limit
    cause: Optional[Exception] = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.timed_out(fn, op_id, host_uuid(), cause, limit)
        try:
            with request_timeout(ps.transport, left):
                return str(call_plugin(ps.x, host_ref, vm_ref, fn, args))
        except TRANSPORT_ERRORS as e:
            cause = e
            if not isinstance(e, socket.timeout):
                # Refused or reset: the master restarting, say; not a busy loop.
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        except XenAPI.Failure as f:
            if cause is None or f.details[0] != "XENVOL_BUSY":
                raise
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def run_task(
    ps: PoolSession,
    host_ref: Optional[str],
    vm_ref: Optional[str],
    fn: str,
    args: Args,
    limit: float,
    host_uuid: HostUuid,
    progress: Progress,
) -> str:
    """Run a plugin call as a XAPI task and wait for it (bounded), for a caller that shows
    progress: no HTTP request lasts longer than a poll. Ctrl-C raises Interrupted with the
    task (plugin.py cancels the operation and reads the task for how it ended). A task
    gone before its answer was read (xapi's task GC destroys completed tasks beyond
    max_tasks: xen-api db_gc_util.ml timeout_tasks) is asked again by its op id, whose
    finished result the plugin keeps, until the deadline."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return _task_once(ps, host_ref, vm_ref, fn, args, limit, deadline, host_uuid, progress)
        except TaskGone:
            if time.monotonic() >= deadline:
                raise errors.timed_out(
                    fn, args["op_id"], host_uuid(), "its task vanished", limit
                ) from None


def _task_once(
    ps: PoolSession,
    host_ref: Optional[str],
    vm_ref: Optional[str],
    fn: str,
    args: Args,
    limit: float,
    deadline: float,
    host_uuid: HostUuid,
    progress: Progress,
) -> str:
    op_id = args["op_id"]
    try:
        task = call_plugin(ps.x.Async, host_ref, vm_ref, fn, args)
    except TRANSPORT_ERRORS as e:
        raise errors.timed_out(fn, op_id, host_uuid(), e, limit) from None
    wait = _Wait(ps, task, op_id, fn, limit, deadline, host_uuid, progress)
    try:
        rec = wait()
    except KeyboardInterrupt:
        raise Interrupted(task) from None  # the caller cancels, and waits on the task
    except BaseException:
        _destroy(ps.x, task)
        raise
    _destroy(ps.x, task)
    if rec["status"] == "success":
        return _task_result(rec["result"])
    raise XenAPI.Failure(rec["error_info"])


def _destroy(api: Any, task: str) -> None:
    try:
        api.task.destroy(task)
    except (XenAPI.Failure, OSError):
        pass


class _Wait:
    """Polls a task until it is no longer pending (or the deadline), showing its steps."""

    def __init__(
        self,
        ps: PoolSession,
        task: str,
        op_id: str,
        fn: str,
        limit: float,
        deadline: float,
        host_uuid: HostUuid,
        progress: Progress,
    ) -> None:
        self.ps, self.task, self.op_id, self.fn = ps, task, op_id, fn
        self.limit, self.deadline, self.host_uuid, self.progress = (
            limit,
            deadline,
            host_uuid,
            progress,
        )

    def __call__(self) -> Dict[str, Any]:
        x, deadline = self.ps.x, self.deadline
        delay, tagged, step = 0.02, False, None
        started = time.monotonic()
        while True:
            rec: Optional[Dict[str, Any]]
            try:
                rec = x.task.get_record(self.task)
            except (socket.timeout, OSError) as e:
                if time.monotonic() >= deadline:
                    raise errors.timed_out(
                        self.fn, self.op_id, self.host_uuid(), e, self.limit
                    ) from None
                rec = None
            except XenAPI.Failure as f:
                if f.details[:2] == ["HANDLE_INVALID", "task"]:
                    raise TaskGone() from None
                raise
            if rec is not None:
                if rec["status"] != "pending":
                    return rec
                shown = rec["other_config"].get(TASK_STEP_KEY)
                if shown and shown != step:
                    step = shown
                    self.progress(shown)
                if not tagged and time.monotonic() - started > 0.5:
                    # Only calls that last pay for this: the plugin finds its task by it to
                    # write its progress there.
                    tagged = True
                    try:
                        x.task.add_to_other_config(self.task, TASK_OP_KEY, self.op_id)
                    except XenAPI.Failure:
                        pass
            if time.monotonic() >= deadline:
                raise errors.timed_out(self.fn, self.op_id, self.host_uuid(), None, self.limit)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while waiting for a plugin call's task (kept, to read how it ended)."""

    def __init__(self, task: str) -> None:
        KeyboardInterrupt.__init__(self)
        self.task = task


# How long an interrupted call waits for its operation to stop and roll back.
CANCEL_WAIT = 15.0


def _rolled_back(error_info: List[Any]) -> bool:
    """A XENVOL_CANCELLED answer's details say whether anything stands (rolled_back)."""
    try:
        details = json.loads(error_info[2]) if len(error_info) > 2 else {}
    except ValueError:
        details = {}
    return not isinstance(details, dict) or details.get("rolled_back", True) is not False


def cancel_and_wait(
    ps: PoolSession,
    host_ref: Optional[str],
    vm_ref: Optional[str],
    op_id: str,
    task: Optional[str],
    prestart: bool,
    wait: float = CANCEL_WAIT,
) -> str:
    """Cancel operation op_id over a fresh connection (this thread's may be mid-request) and
    wait briefly for it: "rolled back", "completed", "failed" (and rolled back), or
    "unknown" (it may still complete). The task, when there is one, tells; else the plugin's
    `cancel` answer: `finished` (its result is kept), `cancelling`, `not running` (ended
    without a result; a plugin of API 1.2 also stops an operation that starts after the
    cancel: `prestart`)."""
    deadline = time.monotonic() + wait
    try:
        fresh = ps.fresh()
        _set_timeout_of(fresh, min(10.0, wait))
        x = fresh.xenapi
        if host_ref is None and vm_ref is not None:
            host_ref = x.VM.get_resident_on(vm_ref)
        seen_running = False
        while True:
            answer = json.loads(cancel_call(x, host_ref, op_id))
            state = str(answer.get("state"))
            # The answer's API level says whether the host stops an operation not yet started.
            prestart = prestart or level(str(answer.get("api_level", ""))) >= (1, 2)
            if task is not None:
                rec = x.task.get_record(task)
                if rec["status"] != "pending":
                    _destroy(x, task)
                    if rec["status"] == "success":
                        return "completed"
                    info = list(rec["error_info"] or [""])
                    if info[0] != "XENVOL_CANCELLED":
                        return "failed"
                    return "rolled back" if _rolled_back(info) else "not rolled back"
            elif state == "finished":
                return "completed"
            elif state == "cancelling":
                seen_running = True
            elif state == "not running" and (seen_running or prestart):
                return "rolled back"
            if time.monotonic() >= deadline:
                return "unknown"
            time.sleep(0.2)
    except (KeyboardInterrupt, XenAPI.Failure, OSError, ValueError, errors.XenvolError):
        return "unknown"  # a second Ctrl-C, or the pool cannot say
    except Exception as e:  # an http.client or xmlrpc failure: the pool cannot say either
        if isinstance(e, TRANSPORT_ERRORS):
            return "unknown"
        raise


def level(text: str) -> Tuple[int, ...]:
    """An API level, "1.2", as (1, 2); () when it is none."""
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return ()


def cancel_call(api: Any, host_ref: Optional[str], op_id: str) -> str:
    return str(api.host.call_plugin(host_ref, PLUGIN, "cancel", {"operation": op_id}))


def _set_timeout_of(session: Any, seconds: float) -> None:
    transport = session._ServerProxy__transport
    if hasattr(transport, "timeout"):
        transport.timeout = seconds


def _task_result(result: str) -> str:
    """A task's result is the call's value as XML-RPC writes it (<value>...</value>)."""
    params, _ = xmlrpc.client.loads(
        "<methodResponse><params><param>%s</param></params></methodResponse>" % result
    )
    return str(params[0])
