"""session, host and pool messages."""
import time

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
        raise XapiError("SESSION_AUTHENTICATION_FAILED", uname,
                        "Authentication failure")
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
    sim = ctx.sim
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


@message("host.get_control_domain")
def get_control_domain(ctx, host_ref):
    return ctx.db.raw("host", host_ref)["control_domain"]


@message("host.get_iscsi_iqn")
def get_iscsi_iqn(ctx, host_ref):
    return ctx.db.raw("host", host_ref)["iscsi_iqn"]
