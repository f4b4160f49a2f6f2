"""The closed set of drop reasons and the pure mapping from failures to them.

Reasons become Prometheus label values, so the set is closed: every failure a leg can
meet maps to exactly one of these, and anything unforeseen is ``internal_error``.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from dataclasses import dataclass
from typing import Literal

import aiohttp

Phase = Literal["dns", "connect", "handshake", "session"]


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
    HTTP_ERROR = "http_error"
    IO_ERROR = "io_error"
    PROBE_STALL = "probe_stall"
    INTERNAL_ERROR = "internal_error"


# Reasons that say nothing about the path's segments: they must never convict one.
NON_PATH_REASONS: frozenset[Reason] = frozenset(
    {Reason.DNS_FAILED, Reason.ROUTE_MISMATCH, Reason.PROBE_STALL, Reason.INTERNAL_ERROR}
)


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


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # Exception texts can embed peer-controlled data; keep events bounded.
    return f"{type(exc).__name__}: {text}"[:300]


def _os_error_reason(err: OSError, phase: Phase) -> Reason:
    if isinstance(err, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED
    if isinstance(err, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Reason.RESET
    if isinstance(err, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR
    if isinstance(err, TimeoutError):
        return _timeout_reason(phase)
    return Reason.IO_ERROR


def _timeout_reason(phase: Phase) -> Reason:
    return Reason.RTT_TIMEOUT if phase == "session" else Reason.CONNECT_TIMEOUT


def classify(exc: BaseException, phase: Phase) -> Classified:
    """Map a failure seen in ``phase`` to its reason. Pure: inspects, never acts."""
    if isinstance(exc, ProbeFailure):
        return Classified(exc.reason, exc.detail[:300], exc.close_code)
    detail = _describe(exc)
    reason = _classify_reason(exc, phase)
    return Classified(reason, detail)


def _classify_reason(exc: BaseException, phase: Phase) -> Reason:
    # Order matters: aiohttp's TLS errors subclass its connector errors, and
    # asyncio.TimeoutError is TimeoutError which is an OSError.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return Reason.TLS_ERROR
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Reason.DNS_FAILED
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _os_error_reason(exc.os_error, phase)
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return Reason.HANDSHAKE_REJECTED
    if isinstance(exc, aiohttp.ClientResponseError):
        return Reason.HTTP_ERROR
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return _timeout_reason(phase)
    if isinstance(exc, aiohttp.ServerDisconnectedError | asyncio.IncompleteReadError):
        return Reason.RESET
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionResetError):
        return Reason.RESET
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR
    if isinstance(exc, OSError):
        return _os_error_reason(exc, phase)
    if isinstance(exc, aiohttp.ClientError):
        return Reason.IO_ERROR
    return Reason.INTERNAL_ERROR
