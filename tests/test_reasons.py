"""Every failure maps to exactly one reason of the closed set."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from t3probe.legs.classify import classify
from t3probe.reasons import (
    CONNECT_PHASES,
    NON_PATH_REASONS,
    DnsFailure,
    Phase,
    ProbeFailure,
    Reason,
)
from tests.support.contract import CONNECT_PHASES as CONTRACT_CONNECT_PHASES
from tests.support.contract import DNS_FAILURES, DROP_REASONS

KEY = ConnectionKey("t3.example.test", 443, True, True, None, None, None, None)


def _caused_by_reset() -> aiohttp.ClientPayloadError:
    error = aiohttp.ClientPayloadError("truncated")
    error.__cause__ = ConnectionResetError(104, "reset by peer")
    return error


def _connector_error(err: OSError) -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(KEY, err)


CASES: list[tuple[str, BaseException, Phase, Reason]] = [
    (
        "refused",
        _connector_error(ConnectionRefusedError(111, "refused")),
        "tcp",
        Reason.CONNECT_REFUSED,
    ),
    (
        "reset while connecting",
        _connector_error(ConnectionResetError(104, "reset")),
        "tcp",
        Reason.RESET,
    ),
    ("unreachable", _connector_error(OSError(113, "no route")), "tcp", Reason.UNREACHABLE),
    ("net unreachable", _connector_error(OSError(101, "no net")), "tcp", Reason.UNREACHABLE),
    (
        "local firewall",
        _connector_error(PermissionError(1, "denied")),
        "tcp",
        Reason.PROBE_NETWORK,
    ),
    ("no descriptors", _connector_error(OSError(24, "too many")), "tcp", Reason.PROBE_NETWORK),
    ("no buffers", OSError(105, "no buffer space"), "session", Reason.PROBE_NETWORK),
    ("reset on write", aiohttp.ClientOSError(104, "reset by peer"), "upgrade", Reason.RESET),
    ("other io", _connector_error(OSError(5, "i/o")), "tcp", Reason.IO_ERROR),
    ("connect timeout", TimeoutError(), "tcp", Reason.CONNECT_TIMEOUT),
    ("tls handshake timeout", TimeoutError(), "tls", Reason.CONNECT_TIMEOUT),
    ("handshake timeout", TimeoutError(), "upgrade", Reason.CONNECT_TIMEOUT),
    ("session timeout", TimeoutError(), "session", Reason.RTT_TIMEOUT),
    (
        "certificate",
        aiohttp.ClientConnectorCertificateError(KEY, ssl.CertificateError("name")),
        "tcp",
        Reason.TLS_ERROR,
    ),
    ("raw ssl error", ssl.SSLError(1, "bad record mac"), "session", Reason.TLS_ERROR),
    (
        "dns via aiohttp",
        aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name unknown")),
        "dns",
        Reason.DNS_FAILED,
    ),
    (
        "upgrade rejected",
        aiohttp.WSServerHandshakeError(
            aiohttp.RequestInfo(URL("ws://x/"), "GET", {}),  # type: ignore[arg-type]
            (),
            status=503,
        ),
        "upgrade",
        Reason.HANDSHAKE_REJECTED,
    ),
    (
        "server disconnected",
        aiohttp.ServerDisconnectedError(),
        "session",
        Reason.CLOSED_WITHOUT_FRAME,
    ),
    ("connection reset", ConnectionResetError(104, "reset"), "session", Reason.RESET),
    ("broken pipe", BrokenPipeError(32, "pipe"), "session", Reason.RESET),
    ("eof mid-read", asyncio.IncompleteReadError(b"", 2), "session", Reason.CLOSED_WITHOUT_FRAME),
    ("payload", aiohttp.ClientPayloadError("truncated"), "session", Reason.CLOSED_WITHOUT_FRAME),
    ("payload cut by a reset", _caused_by_reset(), "session", Reason.RESET),
    ("generic client error", aiohttp.ClientError("odd"), "session", Reason.IO_ERROR),
    ("generic os error", OSError(5, "EIO"), "session", Reason.IO_ERROR),
    ("a bug", KeyError("oops"), "session", Reason.INTERNAL_ERROR),
    ("another bug", TypeError("bad"), "tcp", Reason.INTERNAL_ERROR),
    (
        "explicit",
        ProbeFailure(Reason.ROUTE_MISMATCH, "cf-ray missing"),
        "upgrade",
        Reason.ROUTE_MISMATCH,
    ),
]


@pytest.mark.parametrize(
    ("exc", "phase", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classification_table(exc: BaseException, phase: Phase, expected: Reason) -> None:
    assert classify(exc, phase).reason is expected


def test_close_code_travels_in_the_classification_not_the_reason() -> None:
    failure = classify(ProbeFailure(Reason.CLOSED_BY_PEER, "going", close_code=4000), "session")
    assert (failure.reason, failure.close_code) == (Reason.CLOSED_BY_PEER, 4000)


def test_detail_is_bounded_whatever_the_peer_sent() -> None:
    failure = classify(OSError(5, "x" * 10_000), "session")
    assert len(failure.detail) <= 300


@pytest.mark.parametrize("phase", ["dns", "tcp", "tls", "upgrade"])
def test_a_connect_failure_names_its_phase_within_the_bound(phase: Phase) -> None:
    failure = classify(_connector_error(ConnectionResetError(104, "x" * 10_000)), phase)
    assert failure.detail.endswith(f" (phase {phase})")
    assert len(failure.detail) <= 300


def test_a_session_failure_names_no_phase() -> None:
    assert "phase" not in classify(ConnectionResetError(104, "reset"), "session").detail


def test_the_connect_phases_are_the_contract() -> None:
    assert set(CONNECT_PHASES) == CONTRACT_CONNECT_PHASES


def test_the_dns_failure_set_is_the_contract() -> None:
    assert {failure.value for failure in DnsFailure} == DNS_FAILURES


def test_the_reason_set_is_the_contract() -> None:
    assert {r.value for r in Reason} == DROP_REASONS
    assert Reason.RESET not in NON_PATH_REASONS
    assert Reason.ROUTE_MISMATCH in NON_PATH_REASONS
