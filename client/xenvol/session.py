"""The XAPI session a client works through: login that follows HOST_IS_SLAVE to the master,
TLS verified or pinned (transport.py), XAPI failures as xenvol exceptions, logout."""

from typing import Any, Dict, Optional
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from . import errors
from .secrets import Scrub
from .transport import AnyTransport, for_url


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
        self.transport = transport
        self.owned = owned

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
            except OSError as e:
                raise errors.ConnectionFailed("cannot reach %s: %s" % (url, e)) from None
        raise errors.ConnectionFailed("too many HOST_IS_SLAVE redirects from %s" % url)

    @property
    def x(self) -> Any:
        """session.xenapi: XAPI's classes."""
        if self.session is None:
            raise errors.XenvolError("the client is closed")
        return self.session.xenapi

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


def _pin(pins: Dict[str, str], url: str) -> Optional[str]:
    parts = urlsplit(url)
    return pins.get("%s:%d" % (parts.hostname, parts.port or 443))


def with_host(url: str, address: str) -> str:
    """The master's URL: same scheme and port, the address HOST_IS_SLAVE gave."""
    parts = urlsplit(url)
    host = "[%s]" % address if ":" in address and not address.startswith("[") else address
    netloc = host + (":%d" % parts.port if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, parts.fragment))
