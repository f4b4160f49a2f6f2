"""The hardened reference echo against real peers: aiohttp, `websockets`, raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from t3probe.echo import ECHO_HEADER, EchoLimits, EchoServer, TokenBucket, serve_echo
from t3probe.echo_wire import RATE_EXCEEDED_MARKER, FrameMeter
from tests.support.frames import frame, upgrade_request
from tests.support.harness import eventually

HOST = "127.0.0.1"
StartEcho = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
async def start_echo() -> AsyncIterator[StartEcho]:
    servers: list[EchoServer] = []

    async def start(**limits: Any) -> EchoServer:
        server = await serve_echo(HOST, 0, EchoLimits(**limits))
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def echo(start_echo: StartEcho) -> EchoServer:
    return await start_echo()


def url(server: EchoServer, path: str = "/probe/ws") -> str:
    return f"http://{HOST}:{server.port}{path}"


# --- a hand-written client, for what well-behaved libraries refuse to send ------------


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(length)


async def read_close_code(reader: asyncio.StreamReader) -> int:
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == 0x8:
            return int(struct.unpack("!H", payload[:2])[0])


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    @classmethod
    async def upgraded(cls, port: int) -> RawClient:
        client = await cls.open(port)
        client.writer.write(upgrade_request(port))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def aclose(self) -> None:
        self.writer.close()
        # The server may have reset it first; closing is all we need.
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw_clients() -> AsyncIterator[list[RawClient]]:
    clients: list[RawClient] = []
    yield clients
    for client in clients:
        await client.aclose()


# --- the contract ------------------------------------------------------------------


async def test_healthz(echo: EchoServer, session: aiohttp.ClientSession) -> None:
    async with session.get(url(echo, "/probe/healthz")) as resp:
        assert resp.status == 200
        assert await resp.text() == "ok"


@pytest.mark.parametrize("text", ["ping 1", "", "ünïcødé ✓ 🙂", "x" * 4096])
async def test_aiohttp_client_text_echoed_unchanged(
    echo: EchoServer, session: aiohttp.ClientSession, text: str
) -> None:
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str(text)
        assert await ws.receive_str(timeout=2) == text


async def test_websockets_client_echo_and_close_code_recorded(echo: EchoServer) -> None:
    async with ws_connect(f"ws://{HOST}:{echo.port}/probe/ws") as ws:
        assert ws.response is not None
        assert ws.response.headers[ECHO_HEADER] == "1"
        for i in range(5):
            await ws.send(f"seq={i}")
            assert await ws.recv() == f"seq={i}"
        await ws.close(code=1001)
    await eventually(lambda: echo.close_codes_received == [1001], 2)
    assert echo.connection_count == 0


async def test_raw_client_echo(echo: EchoServer, raw_clients: list[RawClient]) -> None:
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    client.writer.write(frame(0x1, b"hello"))
    assert await read_frame(client.reader) == (0x1, b"hello")


# --- abuse -------------------------------------------------------------------------


async def test_binary_frame_closes_1003(echo: EchoServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_bytes(b"\x00\x01")
        msg = await ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1003


async def test_oversize_frame_closes_1009(echo: EchoServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str("x" * 4097)
        msg = await ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1009


async def test_huge_frame_rejected_from_its_header_without_buffering(
    echo: EchoServer, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    # Announce 10 MB but send only 1 KB of it: the verdict must come from the header.
    client.writer.write(frame(0x1, b"x" * 1024, declared_len=10 * 1024 * 1024))
    async with asyncio.timeout(1):
        assert await read_close_code(client.reader) == 1009


async def test_invalid_utf8_closes_1007(echo: EchoServer, raw_clients: list[RawClient]) -> None:
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    client.writer.write(frame(0x1, b"\xff\xfe"))
    async with asyncio.timeout(1):
        assert await read_close_code(client.reader) == 1007


async def test_garbage_after_upgrade_closes_1002(
    echo: EchoServer, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    client.writer.write(b"\x83\x80" + os.urandom(4))  # reserved opcode 0x3
    async with asyncio.timeout(1):
        assert await read_close_code(client.reader) == 1002


async def test_garbage_request_is_rejected_and_server_stays_healthy(
    echo: EchoServer, session: aiohttp.ClientSession, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.open(echo.port)
    raw_clients.append(client)
    client.writer.write(os.urandom(512) + b"\r\n\r\n")
    async with asyncio.timeout(1):
        answer = await client.reader.read()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str("still here")
        assert await ws.receive_str(timeout=2) == "still here"


async def test_message_flood_closes_1008(
    start_echo: StartEcho, session: aiohttp.ClientSession
) -> None:
    echo = await start_echo(messages_per_second=20.0, burst=5)
    async with session.ws_connect(url(echo)) as ws:
        for i in range(50):
            await ws.send_str(str(i))
        echoed = []
        while True:
            msg = await ws.receive(timeout=2)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            echoed.append(msg.data)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1008
        # The burst went through unchanged before the cap hit.
        assert echoed[:5] == ["0", "1", "2", "3", "4"]
        assert len(echoed) < 50


async def test_ping_flood_is_rate_limited_too(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(messages_per_second=20.0, burst=5)
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    client.writer.write(b"".join(frame(0x9, b"p") for _ in range(50)))
    async with asyncio.timeout(1):
        assert await read_close_code(client.reader) == 1008


async def test_normal_rate_is_not_limited(
    start_echo: StartEcho, session: aiohttp.ClientSession, time_unit: float
) -> None:
    echo = await start_echo(messages_per_second=50.0, burst=2)
    async with session.ws_connect(url(echo)) as ws:
        for i in range(10):
            await ws.send_str(str(i))
            assert await ws.receive_str(timeout=2) == str(i)
            await asyncio.sleep(0.03 * time_unit)


async def test_connection_cap_answers_503_and_keeps_serving(
    start_echo: StartEcho, session: aiohttp.ClientSession
) -> None:
    echo = await start_echo(max_connections=2)
    async with session.ws_connect(url(echo)) as first, session.ws_connect(url(echo)):
        assert echo.connection_count == 2
        with pytest.raises(aiohttp.WSServerHandshakeError) as excinfo:
            await session.ws_connect(url(echo))
        assert excinfo.value.status == 503
        await first.send_str("healthy")
        assert await first.receive_str(timeout=2) == "healthy"
        async with session.get(url(echo, "/probe/healthz")) as resp:
            assert resp.status == 200
    await eventually(lambda: echo.connection_count == 0, 2)
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str("slot freed")
        assert await ws.receive_str(timeout=2) == "slot freed"


async def test_idle_timeout_closes_1000_and_pings_do_not_count(
    start_echo: StartEcho, session: aiohttp.ClientSession, time_unit: float
) -> None:
    idle = 0.3 * time_unit
    echo = await start_echo(idle_timeout_seconds=idle)
    loop = asyncio.get_running_loop()
    # The client pings every 50 ms: control traffic must not keep the slot alive.
    async with session.ws_connect(url(echo), heartbeat=0.05 * time_unit) as ws:
        # Text frames do keep it alive...
        for _ in range(3):
            await asyncio.sleep(idle / 2)
            await ws.send_str("still here")
            assert await ws.receive_str(timeout=2) == "still here"
        started = loop.time()
        msg = await ws.receive(timeout=5 * idle)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1000
        assert idle * 0.8 <= loop.time() - started <= idle + time_unit


async def test_dead_peer_reaped_by_server_ping(
    start_echo: StartEcho, raw_clients: list[RawClient], time_unit: float
) -> None:
    echo = await start_echo(ping_interval_seconds=0.1 * time_unit)
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    await eventually(lambda: echo.connection_count == 1, 1)
    # Never read, never answer: the server must give up on us on its own.
    await eventually(lambda: echo.connection_count == 0, time_unit)
    async with asyncio.timeout(time_unit):
        while True:
            try:
                if not await client.reader.read(4096):
                    break
            except ConnectionResetError:
                break


async def test_slow_loris_upgrade_is_dropped_while_others_are_served(
    start_echo: StartEcho,
    session: aiohttp.ClientSession,
    raw_clients: list[RawClient],
    time_unit: float,
) -> None:
    echo = await start_echo(header_timeout_seconds=0.3 * time_unit)
    loris = await RawClient.open(echo.port)
    raw_clients.append(loris)
    loris.writer.write(upgrade_request(echo.port)[:40])
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str("not starved")
        assert await ws.receive_str(timeout=2) == "not starved"
    async with asyncio.timeout(2 * time_unit):
        for _ in range(3):  # trickle, as a slow-loris does: it must not re-arm the timer
            loris.writer.write(b"X")
            await asyncio.sleep(0.05 * time_unit)
        assert await loris.reader.read() == b""


async def test_close_all_delivers_code_to_every_client(
    echo: EchoServer, session: aiohttp.ClientSession
) -> None:
    async with (
        session.ws_connect(url(echo)) as aio_ws,
        ws_connect(f"ws://{HOST}:{echo.port}/probe/ws") as lib_ws,
    ):
        await eventually(lambda: echo.connection_count == 2, 2)
        closing = asyncio.create_task(echo.close_all(4000, "fault injected"))
        msg = await aio_ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 4000
        with pytest.raises(websockets.ConnectionClosed) as excinfo:
            await asyncio.wait_for(lib_ws.recv(), 2)
        assert excinfo.value.rcvd is not None
        assert excinfo.value.rcvd.code == 4000
        await asyncio.wait_for(closing, 2)
    await eventually(lambda: echo.connection_count == 0, 2)
    # Replies to our own close are not "codes clients sent".
    assert echo.close_codes_received == []


async def test_close_all_rejects_unsendable_code(echo: EchoServer) -> None:
    with pytest.raises(ValueError, match="1006"):
        await echo.close_all(1006)


async def test_stop_closes_with_1001() -> None:
    echo = await serve_echo(HOST, 0)
    try:
        async with ws_connect(f"ws://{HOST}:{echo.port}/probe/ws") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            stopping = asyncio.create_task(echo.stop())
            with pytest.raises(websockets.ConnectionClosed) as excinfo:
                await asyncio.wait_for(ws.recv(), 2)
            assert excinfo.value.rcvd is not None
            assert excinfo.value.rcvd.code == 1001
            await asyncio.wait_for(stopping, 3)
    finally:
        await echo.stop()  # idempotent: a failed assertion must not leak the server


async def test_bind_error_surfaces(echo: EchoServer) -> None:
    with pytest.raises(OSError, match=r"(?i)address already in use"):
        await serve_echo(HOST, echo.port)


def test_limits_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        EchoLimits(max_connections=0)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.05)
    assert bucket.take(0.11)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


async def test_requests_are_logged_at_debug_only(
    start_echo: StartEcho, caplog: pytest.LogCaptureFixture
) -> None:
    async def access_lines_at(level: int) -> list[logging.LogRecord]:
        caplog.clear()
        caplog.set_level(level)
        echo = await start_echo()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{HOST}:{echo.port}/probe/healthz") as response:
                assert response.status == 200
            async with session.ws_connect(f"ws://{HOST}:{echo.port}/probe/ws") as ws:
                await ws.send_str("ping")
                assert (await ws.receive()).data == "ping"
        await echo.stop()  # every handler has finished, and logged, once stop returns
        return [r for r in caplog.records if r.name == "aiohttp.access"]

    # A heartbeat every few seconds must not make a log line each at the default level.
    assert await access_lines_at(logging.INFO) == []
    debug = await access_lines_at(logging.DEBUG)
    assert {r.levelno for r in debug} == {logging.DEBUG}
    assert any("GET /probe/healthz" in r.getMessage() for r in debug)


# --- the echo is not a lever against dispatch ----------------------------------------


async def upgrade_from(port: int, source: str, headers: bytes = b"") -> tuple[RawClient, bytes]:
    """A raw upgrade from loopback address ``source``; (client, status code)."""
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
    client = RawClient(reader, writer)
    request = upgrade_request(port)
    writer.write(request[:-2] + headers + b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    return client, head.split(b" ", 2)[1]


def session_from(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


async def test_one_address_cannot_starve_another(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(
        max_connections=8,
        max_connections_per_client=3,
        reserved_connections=2,
        reserve_max_per_client=1,
    )
    statuses: dict[str, list[bytes]] = {}
    for source, attempts in [("127.0.0.2", 10), ("127.0.0.3", 10)]:
        for _ in range(attempts):
            client, status = await upgrade_from(echo.port, source)
            raw_clients.append(client)
            statuses.setdefault(source, []).append(status)
    # Each greedy address gets its cap, then 429 (it is them, not the server).
    assert statuses["127.0.0.2"] == [b"101"] * 3 + [b"429"] * 7
    assert statuses["127.0.0.3"] == [b"101"] * 3 + [b"429"] * 7
    # Six of eight held: the rest is the reserve, and a fresh address still gets in.
    async with session_from("127.0.0.4") as session, session.ws_connect(url(echo)) as ws:
        await ws.send_str("not starved")
        assert await ws.receive_str(timeout=2) == "not starved"
        # ...but only one slot each out of the reserve.
        with pytest.raises(aiohttp.WSServerHandshakeError) as excinfo:
            await session.ws_connect(url(echo))
        assert excinfo.value.status == 503
    for client in raw_clients:
        await client.aclose()
    await eventually(lambda: echo.connection_count == 0, 2)
    client, status = await upgrade_from(echo.port, "127.0.0.2")
    raw_clients.append(client)
    assert status == b"101"  # the slots come back


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(max_connections_per_client=1, trusted_proxies=("127.0.0.2/32",))

    async def status(source: str, forwarded_for: str) -> bytes:
        client, code = await upgrade_from(
            echo.port, source, f"X-Forwarded-For: {forwarded_for}\r\n".encode()
        )
        raw_clients.append(client)
        return code

    # 127.0.0.1 is not a trusted proxy: every claim is ignored, it is one client.
    assert await status("127.0.0.1", "203.0.113.1") == b"101"
    assert await status("127.0.0.1", "203.0.113.2") == b"429"
    # 127.0.0.2 is: each forwarded client has its own quota...
    assert await status("127.0.0.2", "203.0.113.1") == b"101"
    assert await status("127.0.0.2", "203.0.113.2") == b"101"
    assert await status("127.0.0.2", "203.0.113.2") == b"429"
    # ...taken from the right-most hop the proxy wrote, not from what the client prepended.
    assert await status("127.0.0.2", "198.51.100.1, 203.0.113.1") == b"429"
    assert await status("127.0.0.2", "203.0.113.1, 203.0.113.3") == b"101"
    assert echo.connection_count == 4


# A text message opened with FIN=0, then continued by empty frames that never finish it.
OPEN_FRAGMENTED = bytes([0x01, 0x80]) + b"\0\0\0\0"
EMPTY_CONTINUATION = bytes([0x00, 0x80]) + b"\0\0\0\0"


async def test_empty_continuation_flood_closes_1008_and_others_are_served(
    start_echo: StartEcho, raw_clients: list[RawClient], time_unit: float
) -> None:
    echo = await start_echo(messages_per_second=20.0, burst=5)
    flooder = await RawClient.upgraded(echo.port)
    raw_clients.append(flooder)
    chunk = EMPTY_CONTINUATION * 10_000

    async def flood() -> None:
        flooder.writer.write(OPEN_FRAGMENTED)
        with contextlib.suppress(ConnectionError):
            while not flooder.reader.at_eof():
                flooder.writer.write(chunk)
                await flooder.writer.drain()

    flooding = asyncio.create_task(flood())
    try:
        async with asyncio.timeout(2 * time_unit):
            assert await read_close_code(flooder.reader) == 1008
        async with session_from("127.0.0.2") as session, session.ws_connect(url(echo)) as ws:
            for i in range(5):
                await ws.send_str(f"healthy {i}")
                assert await ws.receive_str(timeout=2) == f"healthy {i}"
    finally:
        flooding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flooding


async def test_control_frames_inside_a_fragmented_message_are_charged(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(messages_per_second=20.0, burst=5)
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    pong = bytes([0x8A, 0x80]) + b"\0\0\0\0"  # unsolicited pongs are answered by nothing
    client.writer.write(bytes([0x01, 0x81]) + b"\0\0\0\0" + b"a" + pong * 50)
    async with asyncio.timeout(1):
        assert await read_close_code(client.reader) == 1008


async def test_frames_within_the_budget_are_echoed_before_the_close(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(messages_per_second=20.0, burst=5)
    client = await RawClient.upgraded(echo.port)
    raw_clients.append(client)
    # One write: the budget runs out in the middle of it.
    client.writer.write(b"".join(frame(0x1, f"m{i}".encode()) for i in range(20)))
    received = []
    async with asyncio.timeout(2):
        while True:
            opcode, payload = await read_frame(client.reader)
            if opcode == 0x8:
                break
            received.append(payload)
    assert received == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert struct.unpack("!H", payload[:2])[0] == 1008


async def test_pending_connections_over_the_cap_are_closed_at_once(
    start_echo: StartEcho, session: aiohttp.ClientSession, raw_clients: list[RawClient]
) -> None:
    # A header timeout far beyond the test: whatever closes early is the cap.
    echo = await start_echo(max_pending_connections=5, header_timeout_seconds=600)
    idle = [await RawClient.open(echo.port) for _ in range(5)]
    raw_clients.extend(idle)
    await eventually(lambda: echo.pending_connection_count == 5, 2)
    excess = [await RawClient.open(echo.port) for _ in range(3)]
    raw_clients.extend(excess)
    async with asyncio.timeout(2):
        for client in excess:
            with contextlib.suppress(ConnectionResetError):
                assert await client.reader.read() == b""
    assert echo.refused_pending_count == 3
    for client in idle:
        await client.aclose()
    await eventually(lambda: echo.pending_connection_count == 0, 2)
    async with session.ws_connect(url(echo)) as ws:
        # The upgrade gives the pending slot back.
        assert echo.pending_connection_count == 0
        await ws.send_str("served")
        assert await ws.receive_str(timeout=2) == "served"


async def test_pending_connections_are_capped_per_peer(
    start_echo: StartEcho, raw_clients: list[RawClient]
) -> None:
    echo = await start_echo(max_connections_per_client=2, header_timeout_seconds=600)
    for _ in range(2):
        reader, writer = await asyncio.open_connection(HOST, echo.port, local_addr=("127.0.0.2", 0))
        raw_clients.append(RawClient(reader, writer))
    await eventually(lambda: echo.pending_connection_count == 2, 2)
    reader, writer = await asyncio.open_connection(HOST, echo.port, local_addr=("127.0.0.2", 0))
    raw_clients.append(RawClient(reader, writer))
    async with asyncio.timeout(2):
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
    # Another address is not affected.
    async with session_from("127.0.0.3") as session, session.ws_connect(url(echo)) as ws:
        await ws.send_str("served")
        assert await ws.receive_str(timeout=2) == "served"


async def test_idle_pending_connections_time_out_and_free_their_slots(
    start_echo: StartEcho, session: aiohttp.ClientSession, time_unit: float
) -> None:
    echo = await start_echo(max_pending_connections=3, header_timeout_seconds=0.3 * time_unit)
    idle = [await RawClient.open(echo.port) for _ in range(3)]
    try:
        await eventually(lambda: echo.pending_connection_count == 3, 2)
        await eventually(lambda: echo.pending_connection_count == 0, 3 * time_unit)
        async with session.ws_connect(url(echo)) as ws:
            await ws.send_str("served")
            assert await ws.receive_str(timeout=2) == "served"
    finally:
        for client in idle:
            await client.aclose()


class RecordingParser:
    """Stands where aiohttp's parser would: keeps what the meter passes on."""

    def __init__(self) -> None:
        self.received = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.received += data
        return False, b""

    def feed_eof(self) -> None:
        pass


METERED_FRAMES = [
    frame(0x1, b""),
    frame(0x1, b"x" * 125),
    frame(0x1, b"y" * 300),  # 16-bit length
    frame(0x1, b"z" * 70_000, zero_mask=True),  # 64-bit length
    frame(0x9, b"ping"),
    OPEN_FRAGMENTED,
    EMPTY_CONTINUATION,
    EMPTY_CONTINUATION,
    bytes([0x80, 0x01]) + b"!",  # unmasked: the meter does not judge, aiohttp does
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 126, 4096, 1 << 20])
@pytest.mark.parametrize("budget", [len(METERED_FRAMES), 3, 0])
def test_frame_meter_charges_each_frame_in_any_chunking(chunk: int, budget: int) -> None:
    stream = b"".join(METERED_FRAMES)
    parser = RecordingParser()
    takes = []
    exceeded = []

    def take() -> bool:
        takes.append(1)
        return len(takes) <= budget

    meter = FrameMeter(parser, take, lambda: exceeded.append(1))
    for start in range(0, len(stream), chunk):
        meter.feed_data(stream[start : start + chunk])
    if budget == len(METERED_FRAMES):
        assert len(takes) == len(METERED_FRAMES)
        assert parser.received == stream
        assert not meter.exceeded
    else:
        assert meter.exceeded and exceeded == [1]
        paid = b"".join(METERED_FRAMES[:budget])
        assert parser.received.startswith(paid)
        assert RATE_EXCEEDED_MARKER in parser.received[len(paid) :]
        assert len(parser.received) < len(paid) + 64


async def test_clients_gone_during_the_upgrade_leave_no_traceback(
    echo: EchoServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for _ in range(20):
        # The upgrade request, then a RST before the 101 can be read: routine on a public
        # endpoint, and each used to log aiohttp's "Call .prepare() first" traceback.
        _, writer = await asyncio.open_connection(HOST, echo.port)
        writer.write(upgrade_request(echo.port))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    await eventually(lambda: echo.connection_count == 0, within=2.0)
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    async with session.ws_connect(url(echo)) as ws:
        await ws.send_str("still here")
        assert await ws.receive_str(timeout=2) == "still here"
