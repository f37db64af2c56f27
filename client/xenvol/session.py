"""The XAPI session a client works through: login that follows HOST_IS_SLAVE to the master,
TLS verified or pinned (transport.py), XAPI failures as xenvol exceptions, logout.

Threads: one XAPI session, one HTTP connection per thread. xmlrpc's proxy keeps one
connection and is not safe to share (CannotSendRequest, ResponseNotReady), so each thread but
the one that made the session gets a copy of the proxy with a transport of its own, carrying
the same session ref (XAPI serves one session on many connections)."""

import copy
import ssl
import threading
from typing import Any, Dict, Optional
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from . import errors
from .secrets import Scrub
from .transport import AnyTransport, for_url
from .trust import untrusted


class PoolSession:
    """A XenAPI session and the transport it uses. `owned`: made by login(), so close() logs
    it out; a borrowed one belongs to its caller."""

    def __init__(
        self,
        session: Any = None,
        url: Optional[str] = None,
        transport: Optional[AnyTransport] = None,
        owned: bool = False,
    ) -> None:
        self.session = session
        self.url = url
        self._transport = transport
        self.owned = owned
        self._owner = threading.get_ident()
        self._local = threading.local()

    @classmethod
    def login(
        cls,
        url: str,
        username: str,
        password: str,
        originator: str,
        timeout: float,
        verify: bool = True,
        cafile: Optional[str] = None,
        pins: Optional[Dict[str, str]] = None,
    ) -> "PoolSession":
        for _hop in range(3):
            transport = for_url(url, timeout, verify, cafile, _pin(pins or {}, url))
            session = XenAPI.Session(url, transport=transport)
            try:
                session.login_with_password(username, password, "1.0", originator)
                return cls(session, url, transport, owned=True)
            except XenAPI.Failure as f:
                if f.details[0] == "HOST_IS_SLAVE":
                    url = with_host(url, f.details[1])
                    continue
                raise errors.from_failure(f.details, scrub=Scrub([password])) from None
            except ssl.SSLCertVerificationError as e:
                raise untrusted(url, e, timeout) from None
            except OSError as e:
                raise errors.ConnectionFailed("cannot reach %s: %s" % (url, e)) from None
        raise errors.ConnectionFailed("too many HOST_IS_SLAVE redirects from %s" % url)

    def _mine(self) -> Any:
        """This thread's XenAPI.Session: the one made (or borrowed) in the owning thread, a
        copy with a connection of its own in any other."""
        base = self.session
        if base is None:
            raise errors.XenvolError("the client is closed")
        if threading.get_ident() == self._owner:
            return base
        mine = getattr(self._local, "session", None)
        if mine is None or self._local.base is not base:
            mine = self.fresh()
            self._local.session, self._local.base = mine, base
        return mine

    def fresh(self) -> Any:
        """A copy of the session on a new connection (its own transport): for another
        thread, or to cancel while this thread's connection is in an unknown state."""
        base = self.session
        if base is None:
            raise errors.XenvolError("the client is closed")
        # XenAPI.Session turns every attribute it lacks into an XAPI call (copy.copy's
        # __reduce_ex__ too): copy its state by hand.
        clone = object.__new__(type(base))
        clone.__dict__.update(base.__dict__)
        transport = copy.copy(base._ServerProxy__transport)
        transport._connection = (None, None)
        transport._extra_headers = []
        clone._ServerProxy__transport = transport
        clone.transport = transport
        return clone

    def reset(self) -> None:
        """Close this thread's connection (an interrupt left it mid-request): the next
        request opens a new one."""
        if self.session is not None:
            self._mine()._ServerProxy__transport.close()

    @property
    def transport(self) -> Optional[AnyTransport]:
        """This thread's transport (None for a borrowed session: its owner's timeouts)."""
        if self._transport is None or self.session is None:
            return None
        return self._mine()._ServerProxy__transport

    @property
    def x(self) -> Any:
        """session.xenapi of this thread: XAPI's classes."""
        return self._mine().xenapi

    @property
    def handle(self) -> str:
        """The session's own ref (for session.get_this_host)."""
        return str(self.session._session)

    def call(self, fn: Any, *args: Any) -> Any:
        """fn(*args), a XAPI failure raised as a xenvol exception."""
        try:
            return fn(*args)
        except XenAPI.Failure as f:
            raise errors.from_failure(f.details) from None

    def close(self) -> None:
        if self.owned and self.session is not None:
            try:
                self.session.xenapi.session.logout()
            except Exception:
                pass
        self.session = None


def normalize_url(url: str) -> str:
    """`xs1.example.com` or `xs1:8443` as https://…/: xe -s users type just the host."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidArgument(
            "url: %r is not a host name or an http(s) URL" % url, details={"field": "url"}
        )
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise errors.InvalidArgument(
            "url: bad port in %r" % url, details={"field": "url"}
        ) from None
    return url if parts.path else url + "/"


def _pin(pins: Dict[str, str], url: str) -> Optional[str]:
    parts = urlsplit(url)
    return pins.get("%s:%d" % (parts.hostname, parts.port or 443))


def with_host(url: str, address: str) -> str:
    """The master's URL: same scheme and port, the address HOST_IS_SLAVE gave."""
    parts = urlsplit(url)
    host = "[%s]" % address if ":" in address and not address.startswith("[") else address
    netloc = host + (":%d" % parts.port if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, parts.fragment))
