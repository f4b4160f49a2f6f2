"""Library exceptions (aiohttp, ssl, OS) seen by a leg, mapped to the closed reason set."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from t3probe.reasons import (
    MAX_DETAIL,
    Classified,
    Phase,
    ProbeFailure,
    Reason,
    describe,
    os_error_reason,
    timeout_reason,
)


def classify(exc: BaseException, phase: Phase) -> Classified:
    """Map a failure seen in ``phase`` to its reason: inspects, never acts."""
    if isinstance(exc, ProbeFailure):
        return Classified(exc.reason, exc.detail[:MAX_DETAIL], exc.close_code)
    return Classified(_reason(exc, phase), _with_phase(describe(exc), phase))


def _with_phase(detail: str, phase: Phase) -> str:
    """Name where a connect attempt failed: a RST during TLS and one in answer to the
    upgrade come from different boxes. In the session there is only one place."""
    if phase == "session":
        return detail
    suffix = f" (phase {phase})"
    return detail[: MAX_DETAIL - len(suffix)] + suffix


def _payload_reason(exc: aiohttp.ClientPayloadError) -> Reason:
    """A body cut short: by a RST if the cause says so, else by the peer closing."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ConnectionResetError) or getattr(cause, "errno", None) == 104:
        return Reason.RESET
    return Reason.CLOSED_WITHOUT_FRAME


def _reason(exc: BaseException, phase: Phase) -> Reason:
    # Order matters: aiohttp's TLS errors subclass its connector errors, and
    # asyncio.TimeoutError is TimeoutError which is an OSError.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return Reason.TLS_ERROR
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Reason.DNS_FAILED
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_error_reason(exc.os_error, phase)
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return Reason.HANDSHAKE_REJECTED
    if isinstance(exc, aiohttp.ClientResponseError):
        return Reason.HTTP_ERROR
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return timeout_reason(phase)
    # The peer closed the connection (FIN) with no answer: a process that died or a
    # proxy's idle close, not a middlebox's RST.
    if isinstance(exc, aiohttp.ServerDisconnectedError | asyncio.IncompleteReadError):
        return Reason.CLOSED_WITHOUT_FRAME
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return Reason.RESET
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _payload_reason(exc)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR
    if isinstance(exc, OSError):
        return os_error_reason(exc, phase)
    if isinstance(exc, aiohttp.ClientError):
        return Reason.IO_ERROR
    return Reason.INTERNAL_ERROR
