"""session, host and pool messages."""

import time
import xmlrpc.client

from . import plugins
from .errors import XapiError
from .handlers import message
from .sm import onslave

# xapi makes a failed login wait before it answers (brute-force damping).
LOGIN_FAILURE_DELAY = 5.0


@message("session.login_with_password")
def login_with_password(ctx, uname, pwd, version="1.1", originator=""):
    sim = ctx.sim
    # xen-api ocaml/xapi/xapi_session.ml login_with_password: over a host's unix socket the
    # caller is preauth root: no password and no user name is checked, and the session is a
    # local-superuser, non-pool session on that host, a member included (session messages run
    # locally, message_forwarding.ml Session = Local.Session; HOST_IS_SLAVE is only for
    # unauthenticated logins, which here are the TCP ones).
    if ctx.endpoint.transport == "tcp" and (uname != sim.username or pwd != sim.password):
        time.sleep(LOGIN_FAILURE_DELAY)
        raise XapiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return sim.new_session(ctx.endpoint.host, uname, originator)


@message("session.logout")
def logout(ctx):
    ctx.sim.end_session(ctx.session)


@message("session.get_this_host")
def get_this_host(ctx, self_ref):
    ctx.sim.check_session(self_ref)
    return ctx.db.raw("session", self_ref)["this_host"]


@message("host.call_plugin")
def call_plugin(ctx, host_ref, plugin, fn, args):
    with ctx.db.lock:
        host = ctx.sim.host(host_ref)
    return _run_plugin(ctx, host, plugin, fn, args)


def forward_to(ctx, host):
    """message_forwarding.ml do_op_on, for a call that runs on `host`: when that is not the
    master (where every API call is dispatched: a member's xapi relays its callers' calls
    there, api_server.ml), check_live first (a host whose host_metrics.live is false, as
    xapi_vm_helpers.ml is_host_live reads it, fails HOST_OFFLINE [host] before anything runs;
    the master itself always counts as live), then set_forwarding_on_task: the call's task is
    resident_on that host (its forwarded and forwarded_to fields are internal_only in
    datamodel.ml: no client sees them)."""
    if host.ref == ctx.sim.master.ref:
        return
    with ctx.db.lock:
        metrics = ctx.db.raw("host", host.ref)["metrics"]
        if not (
            ctx.db.exists("host_metrics", metrics) and ctx.db.raw("host_metrics", metrics)["live"]
        ):
            raise XapiError("HOST_OFFLINE", host.ref)
        if ctx.task and ctx.db.exists("task", ctx.task):
            ctx.db.raw("task", ctx.task)["resident_on"] = host.ref


def _run_plugin(ctx, host, plugin, fn, args):
    sim = ctx.sim
    forward_to(ctx, host)
    if plugin == onslave.NAME:
        return onslave.call(sim, host, fn, args)
    if host.ref == sim.master.ref:
        return plugins.run(sim, host, ctx.session, plugin, fn, args)
    # xapi forwards to a member with a fresh pool session that dies with the call.
    temp = sim.new_session(host, "root", "xapi", pool=True)
    try:
        return plugins.run(sim, host, temp, plugin, fn, args)
    finally:
        sim.end_session(temp)


@message("VM.call_host_plugin")
def vm_call_host_plugin(ctx, vm, plugin, fn, args):
    """xen-api ocaml/xapi/message_forwarding.ml VM.call_host_plugin (xapi 25.22.0,
    datamodel_lifecycle.ml): the VM must be Running (VM_BAD_POWER_STATE [vm, "Running", state],
    written by Record_util.vm_power_state_to_string, the generated enum printer: capitalised),
    the call holds the VM operation `call_plugin` with Policy.fail_immediately
    (with_vm_operation), and it is forwarded to the VM's resident host (forward_vm_op, do_op_on:
    HOST_OFFLINE when that host is not live), where xapi_vm.ml call_host_plugin runs
    Xapi_plugins.call_plugin as host.call_plugin does. call_plugin is allowed concurrently with
    nothing (xapi_vm_lifecycle.ml is_allowed_concurrently), so a second call on a VM with any
    current operation fails at once with OTHER_OPERATION_IN_PROGRESS (VM, ref, op, task): the
    simulator checks only the VM's current_operations it records, not the other VM operations'
    own rules."""
    with ctx.db.lock:
        rec = ctx.db.raw("VM", vm)
        if rec["power_state"] != "Running":
            raise XapiError("VM_BAD_POWER_STATE", vm, "Running", rec["power_state"])
        ops = rec["current_operations"]
        if ops:
            task, op = sorted(ops.items())[0]
            raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
        host = ctx.sim.host(rec["resident_on"])
        task = ctx.task
        ops[task] = "call_plugin"
    try:
        return _run_plugin(ctx, host, plugin, fn, args)
    finally:
        with ctx.db.lock:
            if ctx.db.exists("VM", vm):
                ctx.db.raw("VM", vm)["current_operations"].pop(task, None)


@message("host.get_control_domain")
def get_control_domain(ctx, host_ref):
    return ctx.db.raw("host", host_ref)["control_domain"]


@message("host.get_servertime")
def get_servertime(ctx, host_ref):
    """xen-api ocaml/xapi/xapi_host.ml get_servertime: Date.now () on that host (forwarded to
    it, message_forwarding.ml), UTC, whole seconds (ocaml/libs/clock/date.ml)."""
    with ctx.db.lock:
        host = ctx.sim.host(host_ref)
    now = time.gmtime(time.time() + host.clock_offset)
    return xmlrpc.client.DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", now))


@message("host.get_iscsi_iqn")
def get_iscsi_iqn(ctx, host_ref):
    return ctx.db.raw("host", host_ref)["iscsi_iqn"]
