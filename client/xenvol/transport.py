"""XML-RPC transports with timeouts, and TLS verification on unless explicitly turned off.

A host's self-signed certificate (every XenServer host has one) can be trusted by its SHA-256
fingerprint instead of a CA, as XenCenter and Xen Orchestra do: the connection then succeeds
only when the certificate presented is exactly that one (the fingerprints trusted are kept by
trust.py)."""

import contextlib
import hashlib
import http.client
import ssl
import xmlrpc.client
from typing import Iterator, Optional, Union


class CertificateMismatch(OSError):
    """The host presented another certificate than the one pinned for it."""

    def __init__(self, expected: str, found: str) -> None:
        OSError.__init__(
            self,
            "certificate fingerprint %s, expected %s"
            % (format_fingerprint(found), format_fingerprint(expected)),
        )
        self.expected = expected
        self.found = found


def normalize_fingerprint(text: Optional[str]) -> str:
    """'AB:CD:…' or 'abcd…' (SHA-256) as 64 lowercase hex digits; ValueError otherwise."""
    hexdigits = (text or "").replace(":", "").strip().lower()
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise ValueError("not a SHA-256 fingerprint: %r" % text)
    return hexdigits


def format_fingerprint(hexdigits: str) -> str:
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2)).upper()


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        xmlrpc.client.Transport.__init__(self)
        self.timeout = timeout

    def make_connection(self, host: "xmlrpc.client._HostType") -> http.client.HTTPConnection:
        conn = xmlrpc.client.Transport.make_connection(self, host)
        conn.timeout = self.timeout
        return conn


class SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(
        self,
        timeout: float,
        verify: bool = True,
        cafile: Optional[str] = None,
        pinned: Optional[str] = None,
    ) -> None:
        if pinned:
            # The CA chain and name do not matter; the exact certificate does (checked below).
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif verify:
            context = ssl.create_default_context(cafile=cafile)
        else:
            context = ssl._create_unverified_context()  # the caller asked for it explicitly
        xmlrpc.client.SafeTransport.__init__(self, context=context)
        self.timeout = timeout
        self.pinned = normalize_fingerprint(pinned) if pinned else None

    def make_connection(self, host: "xmlrpc.client._HostType") -> http.client.HTTPSConnection:
        conn = xmlrpc.client.SafeTransport.make_connection(self, host)
        conn.timeout = self.timeout
        if self.pinned and not getattr(conn, "_xenvol_pinned", False):
            connect = conn.connect

            def checked_connect() -> None:
                connect()
                sock = conn.sock
                assert isinstance(sock, ssl.SSLSocket)
                found = fingerprint(sock.getpeercert(binary_form=True) or b"")
                if self.pinned and found != self.pinned:
                    conn.close()
                    raise CertificateMismatch(self.pinned, found)

            conn.connect = checked_connect  # type: ignore[method-assign]
            conn._xenvol_pinned = True  # type: ignore[attr-defined]
        return conn


AnyTransport = Union[Transport, SafeTransport]
# What a request can fail with below XAPI: socket and TLS errors, a connection in the wrong
# state (CannotSendRequest, ResponseNotReady, BadStatusLine), an HTTP error status.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)


def for_url(
    url: str,
    timeout: float,
    verify: bool = True,
    cafile: Optional[str] = None,
    pinned: Optional[str] = None,
) -> AnyTransport:
    if url.lower().startswith("https:"):
        return SafeTransport(timeout, verify, cafile, pinned)
    return Transport(timeout)


def peer_fingerprint(host: str, port: int, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate a TLS server presents, unverified: only to
    show it to the user, who compares it with the host's own before trusting it."""
    import socket

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return fingerprint(tls.getpeercert(binary_form=True) or b"")


@contextlib.contextmanager
def request_timeout(transport: Optional[AnyTransport], seconds: float) -> Iterator[None]:
    """The HTTP timeout of the requests made meanwhile (a session the client made; a
    borrowed session keeps its owner's timeouts)."""
    if transport is None:
        yield
        return
    old = transport.timeout
    _set_timeout(transport, seconds)
    try:
        yield
    finally:
        _set_timeout(transport, old)


def _set_timeout(transport: AnyTransport, seconds: float) -> None:
    transport.timeout = seconds
    # xmlrpc.client keeps one connection open between requests (Transport._connection).
    conn = getattr(transport, "_connection", (None, None))[1]
    if conn is not None and conn.sock is not None:
        conn.sock.settimeout(seconds)
