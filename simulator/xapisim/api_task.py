"""The task class, and the tasks xapi makes for the calls it dispatches.

xen-api ocaml/xapi/server_helpers.ml do_dispatch + context.ml of_http_req: a call to a message
with an async mode gets a task in the database, named after the wire name (`Async.VBD.plug`
keeps its prefix); a sync call destroys it when it returns, an `Async.` call answers with its
ref at once and runs the work in a thread that completes the task (taskHelper.ml complete /
failed / cancel) and leaves it in the database.
"""

import calendar
import threading
import time
import traceback
import uuid as uuidlib
import xmlrpc.client

from . import wire
from .errors import XapiError
from .handlers import message

COMPLETED = ("success", "failure", "cancelled")
# xen-api ocaml/xapi/xapi_globs.ml max_tasks, completed_task_timeout, pending_task_timeout
MAX_TASKS = 200
COMPLETED_TASK_TIMEOUT = 3900.0
PENDING_TASK_TIMEOUT = 86400.0
# Classes whose calls run under a dummy task (datamodel.ml no_task_id_for).
NO_TASK_ID_FOR = ("task", "event")


def _now():
    # Clock.Date.to_rfc3339: 20260101T10:00:00Z
    return xmlrpc.client.DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))


def _epoch(dt):
    return calendar.timegm(time.strptime(dt.value, "%Y%m%dT%H:%M:%SZ"))


def dummy_ref(name):
    """xen-api ocaml/xapi-types/ref.ml make_dummy / string_of."""
    return "DummyRef:|%s|%s" % (uuidlib.uuid4(), name)


class Tasks:
    """Task records of a simulator and the cancel signals of the calls running under them."""

    def __init__(self, sim):
        self.sim = sim
        self.cancel_signals = {}

    def make(self, label, session, host_ref, description=""):
        """A pending task (taskHelper.ml make). Call with the database lock held."""
        self._gc()
        return self.sim.db.create(
            "task",
            {
                "name_label": label,
                "name_description": description,
                "created": _now(),
                "status": "pending",
                "resident_on": host_ref,
                "progress": 0.0,
                "type": "<none/>",
                "result": "",
                "error_info": [],
                "allowed_operations": [],
                "current_operations": {},
                "session": session,
            },
        )

    def _gc(self):
        """xen-api ocaml/xapi/db_gc_util.ml timeout_tasks, run at each task creation (xapi
        runs it periodically, so this is never later than xapi)."""
        db = self.sim.db
        now = time.time()
        tasks = db.tables["task"]
        young = []
        for ref, t in list(tasks.items()):
            done = t["status"] in COMPLETED
            if done and (
                "destroy" in t["current_operations"].values()
                or _epoch(t["finished"]) < now - COMPLETED_TASK_TIMEOUT
            ):
                db.destroy("task", ref)
            elif not done and _epoch(t["created"]) < now - PENDING_TASK_TIMEOUT:
                db.destroy("task", ref)
            else:
                young.append(ref)
        if len(young) >= MAX_TASKS:
            completed = sorted(
                (r for r in young if tasks[r]["status"] in COMPLETED),
                key=lambda r: _epoch(tasks[r]["finished"]),
            )
            for ref in completed[: len(young) - MAX_TASKS + 1]:
                db.destroy("task", ref)

    def run(self, task, cancellable, delay, fault, work):
        """Run one call under its task; returns its result or raises its failure, after
        completing the task as taskHelper.ml does."""
        signal = threading.Event()
        db = self.sim.db
        with db.lock:
            self.cancel_signals[task] = signal
            if cancellable:
                # taskHelper.ml register_task: cancellable while xenopsd holds the work.
                db.raw("task", task)["allowed_operations"] = ["cancel"]
        try:
            # Cancellation is honoured before the work starts (an injected latency stands for
            # xenopsd's queue); once started the work runs to its end.
            if delay:
                signal.wait(delay) if cancellable else time.sleep(delay)
            if cancellable and signal.is_set():
                raise XapiError("TASK_CANCELLED", task)
            if fault is not None:
                raise fault
            result = work()
        except XapiError as e:
            self._finish(task, error=e.description)
            raise
        except Exception as e:
            self._finish(task, error=["INTERNAL_ERROR", str(e)])
            raise
        else:
            self._finish(task, result=result)
            return result
        finally:
            with db.lock:
                self.cancel_signals.pop(task, None)

    def _finish(self, task, result=None, error=None):
        db = self.sim.db
        with db.lock:
            if not db.exists("task", task):
                return
            rec = db.raw("task", task)
            if rec["status"] != "pending":
                return
            rec.update({"allowed_operations": [], "finished": _now(), "progress": 1.0})
            if error is None:
                # taskHelper.ml set_result_on_task: the result as Xmlrpc.to_string writes it
                # (a void result is Rpc.String "").
                rec.update(
                    {"result": wire.to_xml("" if result is None else result), "status": "success"}
                )
            else:
                rec.update(
                    {
                        "error_info": list(error),
                        "status": "cancelled" if error[0] == "TASK_CANCELLED" else "failure",
                    }
                )
            # Task.destroy of a pending task left `destroy in current_operations; the next
            # db_gc pass destroys it once complete.
            if "destroy" in rec["current_operations"].values():
                db.destroy("task", task)

    def spawn(self, task, cancellable, delay, fault, work):
        """The Async. half of server_helpers.ml do_dispatch: a thread runs the call."""

        def body():
            try:
                self.run(task, cancellable, delay, fault, work)
            except XapiError:
                pass
            except Exception:
                traceback.print_exc()

        threading.Thread(target=body, name="task " + task, daemon=True).start()
        return task


# ------------------------------------------------------------------- task messages
@message("task.create")
def task_create(ctx, label, description):
    """xen-api ocaml/xapi/xapi_task.ml create: a pending task owned by the caller's session."""
    return ctx.sim.tasks.make(label, ctx.session, ctx.sim.master.ref, description)


@message("task.destroy")
def task_destroy(ctx, task):
    """xen-api ocaml/xapi/xapi_task.ml destroy: a completed task goes now, a pending one is
    marked and goes when it completes."""
    rec = ctx.db.raw("task", task)
    if rec["status"] in COMPLETED:
        ctx.db.destroy("task", task)
    else:
        rec["current_operations"]["task"] = "destroy"


@message("task.cancel")
def task_cancel(ctx, task):
    """xen-api ocaml/xapi/xapi_task.ml cancel: current_operations becomes the caller's task
    with `cancel; only a call xenopsd runs as a registered task (allowed_operations
    [cancel]) is stopped. A plugin call is not: xapi_plugins.ml runs the plugin with
    Forkhelpers.execute_command_get_output, bound to no task, and it runs to its end."""
    rec = ctx.db.raw("task", task)
    rec["current_operations"] = {ctx.task or dummy_ref("task.cancel"): "cancel"}
    signal = ctx.sim.tasks.cancel_signals.get(task)
    if signal is not None and "cancel" in rec["allowed_operations"]:
        signal.set()
