"""Trust on first use: a host's self-signed certificate trusted by its SHA-256 fingerprint once
the user has compared it with the host's (as XenCenter and Xen Orchestra do), remembered in
~/.config/xenvol/known_certs, and what to do about a certificate that is not trusted (the
library's error, untrusted; the CLI's, untrusted_cli).

The file holds one "host:port sha256" a line: the CLI's --trust-fingerprint writes it, and
every Client reads it (pinned_certs=None); transport.py enforces a pin on each connection."""

import os
import ssl
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from . import errors
from .transport import (
    CertificateMismatch,
    format_fingerprint,
    normalize_fingerprint,
    peer_fingerprint,
)

# Where a user reads the fingerprint to compare with.
ON_THE_HOST = (
    "on the host: openssl x509 -noout -fingerprint -sha256 -in /etc/xensource/xapi-ssl.pem"
)


def known_certs_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "xenvol", "known_certs")


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return "%s:%d" % (parts.hostname, parts.port or 443)


def load_known_certs() -> Dict[str, str]:
    pins = {}
    try:
        with open(known_certs_path()) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) == 2 and not line.startswith("#"):
                    pins[fields[0]] = fields[1]
    except OSError:
        pass
    return pins


def remember_cert(hostport: str, fpr: str) -> None:
    pins = load_known_certs()
    if pins.get(hostport) == fpr:
        return
    pins[hostport] = fpr
    path = known_certs_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        fh.write("# host:port  SHA-256 of the certificate trusted (xenvol --trust-fingerprint)\n")
        for k in sorted(pins):
            fh.write("%s %s\n" % (k, pins[k]))
    os.replace(path + ".tmp", path)


def with_fingerprint(
    url: str, fingerprint: Optional[str], pins: Dict[str, str]
) -> Tuple[Dict[str, str], Optional[str]]:
    """(the pins with --trust-fingerprint's for url's host:port, that fingerprint or None)."""
    pins = dict(pins)
    if not fingerprint:
        return pins, None
    try:
        pinned = normalize_fingerprint(fingerprint)
    except ValueError as e:
        raise errors.InvalidArgument(
            "--trust-fingerprint: %s" % e, details={"field": "trust_fingerprint"}
        ) from None
    pins[hostport(url)] = pinned
    return pins, pinned


def untrusted_cli(url: str, cause: BaseException, timeout: float) -> errors.ConnectionFailed:
    """The CLI's one-line hint for a certificate it does not trust: a pinned one that changed
    (CertificateMismatch), or one no CA vouches for, with the fingerprint to compare."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    if isinstance(cause, CertificateMismatch):
        return errors.ConnectionFailed(
            "the certificate of %s:%d changed: it is %s, trusted was %s. If the host's "
            "certificate was replaced (%s), trust the new one with --trust-fingerprint %s; "
            "otherwise something is in between"
            % (
                host,
                port,
                format_fingerprint(cause.found),
                format_fingerprint(cause.expected),
                ON_THE_HOST,
                format_fingerprint(cause.found),
            ),
            "TLS_CERTIFICATE_CHANGED",
            {"fingerprint": cause.found},
        )
    try:
        fpr: Optional[str] = format_fingerprint(peer_fingerprint(host, port, timeout))
    except (OSError, ssl.SSLError):
        fpr = None
    return errors.ConnectionFailed(
        "the certificate of %s:%d is not signed by a CA this machine trusts (%s). XenServer "
        "and XCP-ng hosts have a self-signed one: %s. Compare it with the host's (%s); if they "
        "match, add --trust-fingerprint %s (it is remembered in %s), or give --cafile"
        % (
            host,
            port,
            getattr(cause, "verify_message", None) or cause,
            "its SHA-256 fingerprint is %s" % fpr if fpr else "its fingerprint could not be read",
            ON_THE_HOST,
            fpr or "SHA256",
            known_certs_path(),
        ),
        "TLS_CERTIFICATE_UNTRUSTED",
        {"fingerprint": fpr},
    )


def untrusted(url: str, cause: BaseException, timeout: float) -> errors.ConnectionFailed:
    """The library's error for a certificate no CA vouches for (every XenServer host has a
    self-signed one): how to pin it. The exception's __context__ is the TLS error."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        fpr: Optional[str] = format_fingerprint(peer_fingerprint(host, port, min(timeout, 10.0)))
    except OSError:
        fpr = None
    error = errors.ConnectionFailed(
        "the certificate of %s:%d is not signed by a CA this machine trusts (%s); its SHA-256 "
        "fingerprint is %s. Compare it with the host's (%s); if they match, pin it: "
        "Client(..., pinned_certs={'%s:%d': 'FINGERPRINT'}), or once for the CLI and this "
        "library: `xenvol --url %s --trust-fingerprint FINGERPRINT version` (kept in %s); or "
        "give cafile="
        % (
            host,
            port,
            cause,
            fpr or "unreadable",
            ON_THE_HOST,
            host,
            port,
            url,
            known_certs_path(),
        ),
        "TLS_CERTIFICATE_UNTRUSTED",
        {"fingerprint": fpr},
    )
    error.__context__ = cause
    return error
