"""One plugin call's view of XAPI: the plugin's own local session, this host, settings."""
import contextlib

import XenAPI

from . import settings
from .version import VERSION
from .errors import from_xapi

NULL = "OpaqueRef:NULL"


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


class Call(object):
    def __init__(self, session):
        self.session = session
        self.x = session.xenapi
        self.host = self.x.session.get_this_host(session._session)
        self.host_uuid = self.x.host.get_uuid(self.host)
        self.settings = settings.load()
        self.held = []

    def hold(self, lease):
        """Keep a lease until finish()."""
        self.held.append(lease)

    def finish(self):
        while self.held:
            self.held.pop().release()

    def do(self, doing, fn, *args):
        """Call XAPI; a failure becomes a xenvol error saying what we were doing."""
        try:
            return fn(*args)
        except XenAPI.Failure as f:
            raise from_xapi(f, doing)

    def find(self, cls, uuid):
        """The ref of an object by uuid, or None when there is none."""
        try:
            return getattr(self.x, cls).get_by_uuid(uuid)
        except XenAPI.Failure as f:
            if f.details[0] == "UUID_INVALID":
                return None
            raise from_xapi(f, "looking up %s %s" % (cls, uuid))

    def host_pbd(self, sr, host):
        for pbd in self.do("listing the SR's PBDs", self.x.SR.get_PBDs, sr):
            if self.x.PBD.get_host(pbd) == host:
                return pbd
        return None

    def this_host_pbd(self, sr):
        return self.host_pbd(sr, self.host)


