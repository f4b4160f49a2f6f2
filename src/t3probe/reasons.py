"""The closed sets of drop reasons and DNS failure kinds.

Reasons become Prometheus label values, so the set is closed: every failure a leg can
meet maps to exactly one of these, and anything unforeseen is ``internal_error``.
Pure: the mapping from library exceptions lives with the legs
(:mod:`t3probe.legs.classify`).
"""

from __future__ import annotations

import enum
import errno
import ssl
from dataclasses import dataclass
from typing import Literal

MAX_DETAIL = 300

# Where an attempt is: resolving, the TCP connect, the TLS handshake, the WebSocket upgrade
# (its HTTP request and 101), then the session. Named in every connect failure's detail:
# a SYN lost and a TLS handshake stalled are both connect timeouts, on different segments.
Phase = Literal["dns", "tcp", "tls", "upgrade", "session"]
# The phases before the session, each timed by t3probe_connect_duration_seconds{phase}.
CONNECT_PHASES: tuple[Phase, ...] = ("dns", "tcp", "tls", "upgrade")


class Reason(enum.StrEnum):
    DNS_FAILED = "dns_failed"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS_ERROR = "tls_error"
    HANDSHAKE_REJECTED = "handshake_rejected"
    ROUTE_MISMATCH = "route_mismatch"
    RTT_TIMEOUT = "rtt_timeout"
    CLOSED_BY_PEER = "closed_by_peer"
    RESET = "reset"
    CLOSED_WITHOUT_FRAME = "closed_without_frame"
    UNREACHABLE = "unreachable"
    HTTP_ERROR = "http_error"
    IO_ERROR = "io_error"
    PROBE_STALL = "probe_stall"
    PROBE_NETWORK = "probe_network"
    INTERNAL_ERROR = "internal_error"


class DnsFailure(enum.StrEnum):
    """Why a resolver gave no usable answer (a metric label: the set is closed)."""

    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    NXDOMAIN = "nxdomain"
    EMPTY = "empty"
    MALFORMED = "malformed"
    HTTP_ERROR = "http_error"
    TLS_ERROR = "tls_error"
    CONNECT_ERROR = "connect_error"
    # TLS came up but no HTTP version both sides speak: no ALPN agreement, or a server
    # that speaks only HTTP/2 answering an HTTP/1.1 request.
    PROTOCOL_ERROR = "protocol_error"
    FORBIDDEN_ADDRESS = "forbidden_address"


# Reasons that say nothing about the path's segments: they must never convict one.
NON_PATH_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.DNS_FAILED,
        Reason.ROUTE_MISMATCH,
        Reason.PROBE_STALL,
        Reason.PROBE_NETWORK,
        Reason.INTERNAL_ERROR,
    }
)

# Errors the probe's own host raises before anything reaches the path: a local firewall
# (EPERM, EACCES), exhausted descriptors or buffers, no usable source address.
LOCAL_ERRNOS = frozenset(
    {
        errno.EPERM,
        errno.EACCES,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,
    }
)
# A router saying "no" (ICMP host/net unreachable, admin prohibited), or the probe's own
# routing table having no route: the leg tells the two apart by asking the kernel.
UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
_PATH_ERRNOS = {
    errno.ECONNREFUSED: Reason.CONNECT_REFUSED,
    errno.ECONNRESET: Reason.RESET,
    errno.EPIPE: Reason.RESET,
    errno.ECONNABORTED: Reason.RESET,
}


class ProbeFailure(Exception):
    """A failure the probe itself recognised, already carrying its reason."""

    def __init__(self, reason: Reason, detail: str, *, close_code: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.close_code = close_code


@dataclass(frozen=True)
class Classified:
    reason: Reason
    detail: str
    close_code: int | None = None


def timeout_reason(phase: Phase) -> Reason:
    """A deadline passing in ``phase``: before the session it is the connection's fault."""
    if phase == "dns":
        return Reason.DNS_FAILED
    return Reason.RTT_TIMEOUT if phase == "session" else Reason.CONNECT_TIMEOUT


def os_error_reason(err: OSError, phase: Phase) -> Reason:
    if err.errno in LOCAL_ERRNOS:
        return Reason.PROBE_NETWORK
    if err.errno in UNREACHABLE_ERRNOS:
        return Reason.UNREACHABLE
    if err.errno in _PATH_ERRNOS:
        return _PATH_ERRNOS[err.errno]
    if isinstance(err, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED
    if isinstance(err, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Reason.RESET
    if isinstance(err, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR
    if isinstance(err, TimeoutError):
        return timeout_reason(phase)
    return Reason.IO_ERROR


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        text = f"{errno.errorcode[code]}: {text}"
    # Exception texts can embed peer-controlled data; keep events bounded.
    return f"{type(exc).__name__}: {text}"[:MAX_DETAIL]
