"""Hostile targets for the probe: deadlines and bounded reads must hold against them.

An HTTP leg's target that trickles its body forever, streams an endless header, or
sends a huge body; a DoH server that answers slowly, with garbage, or with a huge body.
Each time the leg must end up with a reason from the closed set within about the
watchdog (or, for a huge but complete answer, stay up), and the probe's memory must
stay bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator

import psutil
import pytest
from aiohttp import web

from t3probe.lab.backend import SESSION_PATH, BackendServer
from t3probe.lab.dohserver import DohServer
from t3probe.lab.pki import Pki
from t3probe.reasons import Reason
from tests.support.env import TIME_UNIT
from tests.support.harness import (
    Peer,
    RunningProbe,
    eventually,
    leg,
    probe_config,
    raw_tcp_server,
    running_probe,
)

DOH_HOST = "t3.hostile.test"
RSS_MARGIN_BYTES = 60 * 1024 * 1024
# The harness' watchdog is 0.6 units; a deadline "about the watchdog" leaves room for
# one heartbeat interval and scheduling.
WATCHDOG = 0.6 * TIME_UNIT
DETECTION_DEADLINE = WATCHDOG + 1.0 * TIME_UNIT

pytestmark = pytest.mark.timeout(60)


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def first_down(probe: RunningProbe, name: str) -> tuple[float, Reason | None]:
    started = time.monotonic()
    down = await probe.wait_for(name, "down", timeout=DETECTION_DEADLINE + 2.0)
    return time.monotonic() - started, down.reason


def assert_closed_set(probe: RunningProbe) -> None:
    for event in probe.events:
        if event.kind == "down":
            assert event.reason in set(Reason)
            assert event.reason is not Reason.INTERNAL_ERROR, event


# --- HTTP leg targets ------------------------------------------------------------------


async def test_body_trickled_forever_is_a_stall_within_the_watchdog(
    backend: BackendServer,
) -> None:
    url = f"http://127.0.0.1:{backend.port}{SESSION_PATH}"
    with backend.trickle(100):  # 100 B/s: a process too starved to finish an answer
        async with running_probe(probe_config([leg("t3serve", url, kind="http")])) as probe:
            elapsed, reason = await first_down(probe, "t3serve")
            assert reason is Reason.RTT_TIMEOUT
            assert elapsed < DETECTION_DEADLINE
            assert_closed_set(probe)


@contextlib.asynccontextmanager
async def raw_http_server(header_line: bytes, terminate_lines: bool) -> AsyncIterator[int]:
    """Answers any request with a status line, then header bytes that never end."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        for index in range(10_000_000):  # bounded only by the client hanging up
            if terminate_lines:
                writer.write(b"X-Pad-%d: " % index + header_line + b"\r\n")
            else:
                writer.write(header_line)
            await writer.drain()

    async with raw_tcp_server(handle) as port:
        yield port


@pytest.mark.parametrize(
    ("header_line", "terminate_lines"),
    [(b"a" * 100, True), (b"b" * 4096, False)],
    ids=["endless header lines", "one endless header line"],
)
async def test_endless_header_is_bounded(header_line: bytes, terminate_lines: bool) -> None:
    before = rss()
    async with raw_http_server(header_line, terminate_lines) as port:
        config = probe_config([leg("t3serve", f"http://127.0.0.1:{port}/", kind="http")])
        async with running_probe(config) as probe:
            elapsed, reason = await first_down(probe, "t3serve")
            assert reason in {Reason.HTTP_ERROR, Reason.RTT_TIMEOUT, Reason.IO_ERROR}, reason
            assert elapsed < DETECTION_DEADLINE
            # Several more attempts, each against the same endless stream.
            await asyncio.sleep(3 * WATCHDOG)
            assert_closed_set(probe)
            assert rss() <= before + RSS_MARGIN_BYTES, (before, rss())


async def test_huge_body_is_read_bounded_and_the_process_counts_as_alive(
    backend: BackendServer,
) -> None:
    url = f"http://127.0.0.1:{backend.port}{SESSION_PATH}"
    before = rss()
    with backend.huge_body(size_bytes=256 * 1024 * 1024):
        async with running_probe(probe_config([leg("t3serve", url, kind="http")])) as probe:
            await probe.wait_for("t3serve", "up")
            await asyncio.sleep(5 * 0.2 * TIME_UNIT)
            assert not [e for e in probe.events if e.kind == "down"]
            assert (probe.metric("t3probe_rtt_seconds_count", leg="t3serve") or 0) >= 3
            assert rss() <= before + RSS_MARGIN_BYTES, (before, rss())


# --- WebSocket peers ---------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A server ping with the largest payload a control frame may carry: each asks for a pong.
PING = b"\x89\x7d" + b"p" * 125


async def flood_pings_never_read(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Accepts the upgrade, then only sends pings: the pongs they ask for are never read."""
    # A small window: the probe's own buffers fill after a few pongs, however slow it runs.
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        writer.write(PING * 512)  # megabytes of pongs within a watchdog
        await writer.drain()


def downs(probe: RunningProbe, name: str) -> int:
    return sum(1 for event in probe.events if event.leg == name and event.kind == "down")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_ping_flood_never_read_leaks_no_socket_across_reconnects() -> None:
    async with raw_tcp_server(flood_pings_never_read) as port:
        config = probe_config([leg("flood", f"ws://127.0.0.1:{port}/probe/ws")])
        async with running_probe(config) as probe:
            await probe.wait_for("flood", "down", timeout=DETECTION_DEADLINE + 2.0)
            before = open_fds()
            # Each session is a socket whose pongs the peer never read; each ends a drop.
            await eventually(lambda: downs(probe, "flood") >= 7, within=10 * DETECTION_DEADLINE)
            # The upgrades succeeded: each session was flooded, not refused at the door.
            assert sum(1 for event in probe.events if event.kind == "up") >= 7
            # Only the session in progress may hold sockets (the probe's and the peer's).
            assert open_fds() <= before + 2, (before, open_fds())
            assert_closed_set(probe)


# --- DoH servers -------------------------------------------------------------------------


def doh_leg(peer: Peer, pki: Pki, doh_url: str) -> dict[str, object]:
    return leg(
        "cdn",
        f"ws://{DOH_HOST}:{peer.port}/probe/ws",
        resolver={
            "kind": "doh",
            "servers": [doh_url],
            "ca_file": str(pki.ca_cert),
            "timeout_seconds": 0.3 * TIME_UNIT,
        },
    )


@pytest.mark.parametrize("fault", ["slow", "garbage"])
async def test_hostile_doh_is_dns_failed_within_its_timeout(
    peer: Peer, pki: Pki, fault: str
) -> None:
    doh = DohServer({DOH_HOST: ["127.0.0.1"]})
    await doh.start("127.0.0.1", 0, pki.server_context())
    try:
        context = doh.slow(30) if fault == "slow" else doh.garbage()
        with context:
            config = probe_config([doh_leg(peer, pki, doh.url)])
            async with running_probe(config) as probe:
                elapsed, reason = await first_down(probe, "cdn")
                assert reason is Reason.DNS_FAILED
                assert elapsed < 0.3 * TIME_UNIT + 1.0 * TIME_UNIT
                counted = "timeout" if fault == "slow" else "malformed"
                failures = probe.metric("t3probe_dns_failures_total", leg="cdn", reason=counted)
                assert (failures or 0) >= 1
                assert_closed_set(probe)
        # Once the server behaves, the leg resolves and comes up.
        async with running_probe(probe_config([doh_leg(peer, pki, doh.url)])) as probe:
            await probe.wait_for("cdn", "up")
    finally:
        await doh.stop()


async def test_doh_answer_of_megabytes_is_cut_off(peer: Peer, pki: Pki) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/dns-message"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):  # 64 MB, far past any DNS message
                await response.write(b"\0" * 65536)
        return response

    app = web.Application()
    app.router.add_route("*", "/dns-query", huge)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    before = rss()
    try:
        url = f"https://127.0.0.1:{site.port}/dns-query"
        async with running_probe(probe_config([doh_leg(peer, pki, url)])) as probe:
            elapsed, reason = await first_down(probe, "cdn")
            assert reason is Reason.DNS_FAILED
            assert elapsed < 0.3 * TIME_UNIT + 1.0 * TIME_UNIT
            failures = probe.metric("t3probe_dns_failures_total", leg="cdn", reason="malformed")
            assert (failures or 0) >= 1
            assert rss() <= before + RSS_MARGIN_BYTES
    finally:
        await runner.cleanup()
