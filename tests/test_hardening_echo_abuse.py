"""Abuse of the echo at volume, while a healthy probe leg keeps using it.

The echo runs as its own process (so its memory is its own, measured with psutil), with
small caps so that they are reached quickly. test_echo.py covers each cap with one
client; here many clients hit them at once, and the assertion that matters is the
healthy leg: it never drops and keeps heartbeating throughout. Its round-trip times are
not asserted: on a loaded machine they measure the machine (docs/benchmarks.md has the
figures); a leg starved for real misses its watchdog and drops, which is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import psutil
import pytest

from t3probe.echo import EchoLimits
from t3probe.reasons import Reason
from tests.support.env import TIME_UNIT
from tests.support.frames import frame, upgrade_request
from tests.support.harness import RunningProbe, leg, probe_config, running_probe

MAX_CONNECTIONS = 150
LIMITS = EchoLimits(
    max_frame_bytes=4096,
    messages_per_second=20.0,
    burst=40,
    max_connections=MAX_CONNECTIONS,
    # Every client here is 127.0.0.1: these tests are about the total caps, test_echo.py
    # covers the per-address ones.
    max_connections_per_client=4 * MAX_CONNECTIONS,
    reserved_connections=0,
    max_pending_connections=4 * MAX_CONNECTIONS,
    idle_timeout_seconds=30.0,
    header_timeout_seconds=0.5 * TIME_UNIT,
)
ECHO_RSS_MARGIN_BYTES = 60 * 1024 * 1024
ABUSE_SECONDS = 1.5 * TIME_UNIT
MAX_WAVES = 200

pytestmark = pytest.mark.timeout(90)

ECHO_SCRIPT = """
import asyncio, json, signal, sys
from t3probe.echo import EchoLimits, serve_echo

async def main() -> None:
    server = await serve_echo("127.0.0.1", 0, EchoLimits(**json.loads(sys.argv[1])))
    print(server.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()

asyncio.run(main())
"""


@dataclass
class EchoProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/probe/ws"


@dataclass
class Healthy:
    probe: RunningProbe
    rtts: list[float] = field(default_factory=list)

    def assert_unharmed(self) -> None:
        # Never dropped (a heartbeat answered later than the watchdog would be a drop)
        # and kept heartbeating while the abuse went on. A probe_stall is left out: the
        # abusing clients share this process's event loop with the probe, so on a busy
        # machine they can stall the probe itself, which says nothing about the echo.
        downs = [
            e for e in self.probe.events if e.kind == "down" and e.reason is not Reason.PROBE_STALL
        ]
        assert not downs, downs
        assert len(self.rtts) >= 3, self.rtts


@pytest.fixture
async def echo_process() -> AsyncIterator[EchoProcess]:
    limits = {
        name: getattr(LIMITS, name)
        for name in (
            "max_frame_bytes",
            "messages_per_second",
            "burst",
            "max_connections",
            "max_connections_per_client",
            "reserved_connections",
            "max_pending_connections",
            "idle_timeout_seconds",
            "header_timeout_seconds",
        )
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ECHO_SCRIPT,
        json.dumps(limits),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10 * TIME_UNIT):
            port = int(await process.stdout.readline())
        yield EchoProcess(process, port)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
    assert process.returncode == 0


@pytest.fixture
async def healthy(echo_process: EchoProcess) -> AsyncIterator[Healthy]:
    config = probe_config([leg("healthy", echo_process.ws_url)])
    async with running_probe(config) as probe:
        handle = Healthy(probe)
        original = probe.probe.recorder.observe_rtt

        def observe_rtt(leg_name: str, seconds: float, connection: int = 0) -> None:
            handle.rtts.append(seconds)
            original(leg_name, seconds, connection)

        setattr(probe.probe.recorder, "observe_rtt", observe_rtt)  # noqa: B010
        await probe.wait_for("healthy", "up")
        await asyncio.sleep(0.3 * TIME_UNIT)
        handle.rtts.clear()  # the figures that count are those taken under abuse
        yield handle


# --- a raw client, for what well-behaved libraries refuse to send ---------------------


def client_frame(opcode: int, payload: bytes, declared: int | None = None) -> bytes:
    return frame(opcode, payload, declared_len=declared, zero_mask=True)


Raw = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def upgraded(port: int) -> tuple[Raw, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    return (reader, writer), head


async def close_code(reader: asyncio.StreamReader) -> int | None:
    """The code of the server's close frame; None if the connection just ended."""
    try:
        while True:
            b0, b1 = await reader.readexactly(2)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(length)
            if b0 & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def shut(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def gather_all(jobs: list[Awaitable[None]]) -> None:
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


async def in_waves(wave: Callable[[], Awaitable[None]], seconds: float = ABUSE_SECONDS) -> int:
    """Repeat ``wave`` until ``seconds`` have passed, so the healthy leg heartbeats
    several times under the abuse; returns the number of waves."""
    deadline = time.monotonic() + seconds
    for count in range(1, MAX_WAVES + 1):
        await wave()
        if time.monotonic() >= deadline:
            return count
    return MAX_WAVES


async def until(predicate: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, "not true in time"
        await asyncio.sleep(0.05)


# --- the abuse -----------------------------------------------------------------------


async def test_flood_from_many_connections_is_cut_off_and_the_healthy_leg_unharmed(
    echo_process: EchoProcess, healthy: Healthy
) -> None:
    rss_before = echo_process.rss
    flood = b"".join(client_frame(0x1, f"flood {i}".encode()) for i in range(500))
    codes: list[int | None] = []

    async def flooder() -> None:
        (reader, writer), head = await upgraded(echo_process.port)
        assert head.startswith(b"HTTP/1.1 101"), head
        try:
            with contextlib.suppress(ConnectionError):
                for _ in range(4):
                    writer.write(flood)
                    await writer.drain()
            async with asyncio.timeout(5 * TIME_UNIT):
                codes.append(await close_code(reader))
        finally:
            await shut(writer)

    # In waves: the cap on connections is not what this test is about.
    await in_waves(lambda: gather_all([flooder() for _ in range(MAX_CONNECTIONS // 3)]))
    # Every flooder was cut off for its rate (1008), none was served forever.
    assert codes.count(1008) >= 0.9 * len(codes), codes
    healthy.assert_unharmed()
    assert echo_process.rss <= rss_before + ECHO_RSS_MARGIN_BYTES


async def test_empty_continuation_floods_are_cut_off_and_the_healthy_leg_unharmed(
    echo_process: EchoProcess, healthy: Healthy
) -> None:
    # A text message opened with FIN=0, then empty continuation frames that never end it:
    # no message ever completes, so only a per-frame limit can stop it.
    opening = bytes([0x01, 0x80]) + b"\0\0\0\0"
    flood = (bytes([0x00, 0x80]) + b"\0\0\0\0") * 20_000
    codes: list[int | None] = []

    async def flooder() -> None:
        (reader, writer), head = await upgraded(echo_process.port)
        assert head.startswith(b"HTTP/1.1 101"), head
        try:
            # 120 KB in one write, far past the burst; whether the echo reads all of it
            # is its business, the transport buffers it here.
            writer.write(opening + flood)
            async with asyncio.timeout(5 * TIME_UNIT):
                codes.append(await close_code(reader))
        finally:
            writer.transport.abort()

    waves = await in_waves(lambda: gather_all([flooder() for _ in range(MAX_CONNECTIONS // 3)]))
    assert codes == [1008] * (waves * (MAX_CONNECTIONS // 3)), codes
    healthy.assert_unharmed()


async def test_connection_storm_hits_the_cap_and_the_healthy_leg_keeps_its_slot(
    echo_process: EchoProcess, healthy: Healthy
) -> None:
    held: list[asyncio.StreamWriter] = []
    statuses: list[bytes] = []

    async def grab() -> None:
        (_, writer), head = await upgraded(echo_process.port)
        held.append(writer)
        statuses.append(head.split(b" ", 2)[1])

    async def refused() -> None:
        (_, writer), head = await upgraded(echo_process.port)
        await shut(writer)
        assert head.startswith(b"HTTP/1.1 503"), head

    try:
        # The healthy leg holds one slot; twice the cap tries to take the rest at once.
        await gather_all([grab() for _ in range(2 * MAX_CONNECTIONS)])
        assert statuses.count(b"101") == MAX_CONNECTIONS - 1, sorted(set(statuses))
        assert statuses.count(b"503") == MAX_CONNECTIONS + 1
        # The storm goes on against the full server while the healthy leg heartbeats.
        await in_waves(lambda: gather_all([refused() for _ in range(MAX_CONNECTIONS)]))
        healthy.assert_unharmed()
    finally:
        for writer in held:
            await shut(writer)

    async def slot_free() -> bool:
        async with aiohttp.ClientSession() as session:
            with contextlib.suppress(aiohttp.WSServerHandshakeError):
                async with session.ws_connect(echo_process.ws_url) as ws:
                    await ws.send_str("freed")
                    return await ws.receive_str(timeout=2) == "freed"
        return False

    await until(slot_free, 3 * TIME_UNIT)


async def test_oversize_frames_in_bulk_are_refused_from_the_header(
    echo_process: EchoProcess, healthy: Healthy
) -> None:
    rss_before = echo_process.rss
    body = b"x" * (256 * 1024)
    codes: list[int | None] = []

    async def oversize(declared: int) -> None:
        (reader, writer), head = await upgraded(echo_process.port)
        assert head.startswith(b"HTTP/1.1 101"), head
        try:
            with contextlib.suppress(ConnectionError):
                writer.write(client_frame(0x1, body, declared=declared))
                await writer.drain()
            async with asyncio.timeout(5 * TIME_UNIT):
                codes.append(await close_code(reader))
        finally:
            await shut(writer)

    # Announced sizes from just over the cap to 100 GB; 50 clients at once.
    sizes = [LIMITS.max_frame_bytes + 1, 1 << 20, 100 << 20, 100 << 30] * 12 + [1 << 16] * 2
    waves = await in_waves(lambda: gather_all([oversize(size) for size in sizes]))
    assert codes.count(1009) == waves * len(sizes), codes
    healthy.assert_unharmed()
    assert echo_process.rss <= rss_before + ECHO_RSS_MARGIN_BYTES


async def test_slow_loris_storm_is_dropped_and_the_healthy_leg_unharmed(
    echo_process: EchoProcess, healthy: Healthy
) -> None:
    request = upgrade_request(echo_process.port)
    dropped_after: list[float] = []

    async def loris() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_process.port)
        started = time.monotonic()
        try:
            async with asyncio.timeout(5 * TIME_UNIT):
                for byte in request[:-4]:  # never finishes its headers
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05 * TIME_UNIT)
                    if reader.at_eof():
                        break
                with contextlib.suppress(ConnectionError):
                    await reader.read()
            dropped_after.append(time.monotonic() - started)
        except ConnectionError:
            dropped_after.append(time.monotonic() - started)
        finally:
            await shut(writer)

    waves = await in_waves(lambda: gather_all([loris() for _ in range(2 * MAX_CONNECTIONS)]))
    # Dropped by the header timeout, however long each kept trickling.
    assert len(dropped_after) == waves * 2 * MAX_CONNECTIONS
    assert max(dropped_after) < LIMITS.header_timeout_seconds + 2 * TIME_UNIT
    healthy.assert_unharmed()
    async with aiohttp.ClientSession() as session, session.ws_connect(echo_process.ws_url) as ws:
        await ws.send_str("not starved")
        assert await ws.receive_str(timeout=2) == "not starved"
