"""Every failure maps to exactly one reason of the closed set."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from t3probe.legs.classify import classify
from t3probe.reasons import NON_PATH_REASONS, DnsFailure, Phase, ProbeFailure, Reason
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
        "connect",
        Reason.CONNECT_REFUSED,
    ),
    (
        "reset while connecting",
        _connector_error(ConnectionResetError(104, "reset")),
        "connect",
        Reason.RESET,
    ),
    ("unreachable", _connector_error(OSError(113, "no route")), "connect", Reason.UNREACHABLE),
    ("net unreachable", _connector_error(OSError(101, "no net")), "connect", Reason.UNREACHABLE),
    (
        "local firewall",
        _connector_error(PermissionError(1, "denied")),
        "connect",
        Reason.PROBE_NETWORK,
    ),
    ("no descriptors", _connector_error(OSError(24, "too many")), "connect", Reason.PROBE_NETWORK),
    ("no buffers", OSError(105, "no buffer space"), "session", Reason.PROBE_NETWORK),
    ("reset on write", aiohttp.ClientOSError(104, "reset by peer"), "handshake", Reason.RESET),
    ("other io", _connector_error(OSError(5, "i/o")), "connect", Reason.IO_ERROR),
    ("connect timeout", TimeoutError(), "connect", Reason.CONNECT_TIMEOUT),
    ("handshake timeout", TimeoutError(), "handshake", Reason.CONNECT_TIMEOUT),
    ("session timeout", TimeoutError(), "session", Reason.RTT_TIMEOUT),
    (
        "certificate",
        aiohttp.ClientConnectorCertificateError(KEY, ssl.CertificateError("name")),
        "connect",
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
        "handshake",
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
    ("another bug", TypeError("bad"), "connect", Reason.INTERNAL_ERROR),
    (
        "explicit",
        ProbeFailure(Reason.ROUTE_MISMATCH, "cf-ray missing"),
        "handshake",
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


def test_the_dns_failure_set_is_the_contract() -> None:
    assert {failure.value for failure in DnsFailure} == DNS_FAILURES


def test_the_reason_set_is_the_contract() -> None:
    assert {r.value for r in Reason} == DROP_REASONS
    assert Reason.RESET not in NON_PATH_REASONS
    assert Reason.ROUTE_MISMATCH in NON_PATH_REASONS
