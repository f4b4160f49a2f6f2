"""The hardened reference echo against real peers: aiohttp, `websockets`, raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from t3probe.echo import ECHO_HEADER, EchoLimits, EchoServer, TokenBucket, serve_echo
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
