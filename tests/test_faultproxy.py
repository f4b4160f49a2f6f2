"""The lab's fault proxy on real loopback sockets: each fault as a peer observes it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from t3probe.echo import serve_echo
from t3probe.lab.faultproxy import FaultProxy, ProxyFault
from tests.support.harness import eventually

HOST = "127.0.0.1"


class TcpTarget:
    """A TCP peer behind the proxy: echoes (or only swallows) and records what it saw."""

    def __init__(self, *, echo: bool = True, read: bool = True) -> None:
        self.echo = echo
        self.read = read
        self.received = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.resets = 0
        self.eofs = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> TcpTarget:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.writers.append(writer)
        try:
            if not self.read:
                await asyncio.Event().wait()  # hold the connection, read nothing
            while data := await reader.read(65536):
                self.received += data
                if self.echo:
                    writer.write(data)
                    await writer.drain()
            self.eofs += 1
        except ConnectionResetError:
            self.resets += 1
        finally:
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


Connect = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def target() -> AsyncIterator[TcpTarget]:
    peer = await TcpTarget().start()
    yield peer
    await peer.stop()


@pytest.fixture
async def proxy(target: TcpTarget) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(HOST, 0, HOST, target.port, name="lb")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    writers: list[asyncio.StreamWriter] = []

    async def open_(
        port: int, host: str = HOST
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writers.append(writer)
        return reader, writer

    yield open_
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes = b"ping"
) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(payload)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    return loop.time() - started


async def connect_and_read(connect: Connect, port: int) -> bytes:
    # A RST may beat the client's own connect completion: then connecting raises it.
    reader, _ = await connect(port)
    return await asyncio.wait_for(reader.read(1), 2)


async def assert_silent(reader: asyncio.StreamReader, time_unit: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2 * time_unit)
    assert not reader.at_eof()


# --- forwarding ----------------------------------------------------------------------


async def test_forwards_both_ways_and_counts(
    proxy: FaultProxy, target: TcpTarget, connect: Connect
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer, b"hello")
    payload = os.urandom(2 * 1024 * 1024)
    writer.write(payload)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    assert proxy.active_connections == 1
    assert proxy.total_accepted == 1
    # Half-close travels through: the target sees EOF, closes, and we see EOF.
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await eventually(lambda: proxy.active_connections == 0, 2)
    assert target.eofs == 1


async def test_websocket_echo_through_proxy() -> None:
    echo = await serve_echo(HOST, 0)
    proxy = FaultProxy(HOST, 0, HOST, echo.port)
    await proxy.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://{HOST}:{proxy.port}/probe/ws") as ws,
        ):
            await ws.send_str("through the LB")
            assert await ws.receive_str(timeout=2) == "through the LB"
            await echo.close_all(4000)
            msg = await ws.receive(timeout=2)
            assert msg.data == 4000
    finally:
        await proxy.stop()
        await echo.stop()


async def test_buffers_stay_bounded_when_target_does_not_read(connect: Connect) -> None:
    target = await TcpTarget(read=False).start()
    proxy = FaultProxy(HOST, 0, HOST, target.port)
    await proxy.start()
    try:
        _, writer = await connect(proxy.port)
        block = b"x" * (1024 * 1024)
        sent = 0
        with contextlib.suppress(TimeoutError):
            while sent < 256 * 1024 * 1024:
                writer.write(block)
                sent += len(block)
                await asyncio.wait_for(writer.drain(), 0.3)
        # Back-pressure reached us: the proxy holds at most its queue and buffers,
        # the rest sits in kernel socket buffers.
        assert sent < 256 * 1024 * 1024
        assert proxy.buffered_bytes <= 512 * 1024
    finally:
        await proxy.stop()
        await target.stop()


# --- faults ----------------------------------------------------------------------------


async def test_reset_rsts_existing_and_new_connections(
    proxy: FaultProxy, target: TcpTarget, connect: Connect
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    loop = asyncio.get_running_loop()
    with proxy.reset():
        started = loop.time()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 2)
        assert loop.time() - started < 0.5
        await eventually(lambda: target.resets == 1, 1)
        with pytest.raises(ConnectionResetError):
            await connect_and_read(connect, proxy.port)
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)


async def test_reset_share_rsts_every_other_connection_and_every_other_new_one(
    proxy: FaultProxy, target: TcpTarget, connect: Connect
) -> None:
    links = [await connect(proxy.port) for _ in range(4)]
    for reader, writer in links:
        await round_trip(reader, writer)
    with proxy.reset_share(2):
        for index, (reader, writer) in enumerate(links):
            if index % 2 == 0:  # the first, third...: in the order they were accepted
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(reader.read(1), 2)
            else:
                await round_trip(reader, writer)
        with pytest.raises(ConnectionResetError):
            await connect_and_read(connect, proxy.port)  # the first new one is taken
        reader, writer = await connect(proxy.port)  # the second is not
        await round_trip(reader, writer)
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)


async def test_blackhole_share_holds_only_its_share_and_delivers_after(
    proxy: FaultProxy, connect: Connect, time_unit: float
) -> None:
    links = [await connect(proxy.port) for _ in range(3)]
    for reader, writer in links:
        await round_trip(reader, writer)
    with proxy.blackhole_share(3):
        (held_reader, held_writer), *flowing = links
        held_writer.write(b"held")
        await assert_silent(held_reader, time_unit)
        for reader, writer in flowing:
            await round_trip(reader, writer)
    assert await asyncio.wait_for(held_reader.readexactly(4), 2) == b"held"


@pytest.mark.parametrize("every", [1, 65, "half", True])
async def test_a_share_must_be_every_nth_connection(proxy: FaultProxy, every: object) -> None:
    with pytest.raises(ValueError, match=r"every must be a whole number within 2\.\.64"):
        proxy.set_fault("reset_share", every=every)


async def test_refuse_then_listen_again_on_same_port(proxy: FaultProxy, connect: Connect) -> None:
    port = proxy.port
    reader, writer = await connect(port)
    await round_trip(reader, writer)
    with proxy.refuse():
        assert not proxy.listening
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 2)
        with pytest.raises(ConnectionRefusedError):
            await connect(port)
    assert proxy.listening
    assert proxy.port == port
    reader, writer = await connect(port)
    await round_trip(reader, writer)


async def test_blackhole_holds_data_and_delivers_it_after(
    proxy: FaultProxy, target: TcpTarget, connect: Connect, time_unit: float
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    with proxy.blackhole():
        writer.write(b"lost?")
        await assert_silent(reader, time_unit)
        assert bytes(target.received) == b"ping"
        # New connections are accepted but do not reach the target yet.
        late_reader, late_writer = await connect(proxy.port)
        late_writer.write(b"late")
        await assert_silent(late_reader, time_unit)
        assert len(target.writers) == 1
    assert await asyncio.wait_for(reader.readexactly(5), 2) == b"lost?"
    assert await asyncio.wait_for(late_reader.readexactly(4), 2) == b"late"


async def test_latency_adds_round_trip_time(
    proxy: FaultProxy, connect: Connect, time_unit: float
) -> None:
    reader, writer = await connect(proxy.port)
    baseline = min([await round_trip(reader, writer) for _ in range(3)])
    with proxy.latency(50):
        delayed = [await round_trip(reader, writer) for _ in range(3)]
    added = min(delayed) - baseline
    assert added >= 0.045
    assert max(delayed) <= 0.05 + 0.1 * time_unit
    assert await round_trip(reader, writer) < 0.02 * time_unit + baseline


async def test_half_open_upstream_forwards_only_client_to_target(
    proxy: FaultProxy, target: TcpTarget, connect: Connect, time_unit: float
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    with proxy.half_open("upstream"):
        writer.write(b"up")
        await eventually(lambda: bytes(target.received) == b"pingup", time_unit)
        await assert_silent(reader, time_unit)
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"up"


async def test_half_open_downstream_forwards_only_target_to_client(
    proxy: FaultProxy, target: TcpTarget, connect: Connect, time_unit: float
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    with proxy.half_open("downstream"):
        writer.write(b"held")
        target.writers[0].write(b"push")
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"push"
        await asyncio.sleep(0.1 * time_unit)
        assert bytes(target.received) == b"ping"
    await eventually(lambda: bytes(target.received) == b"pingheld", 2)


async def test_close_sends_fin_to_existing_and_new_connections(
    proxy: FaultProxy, target: TcpTarget, connect: Connect
) -> None:
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    with proxy.close():
        assert await asyncio.wait_for(reader.read(), 1) == b""
        await eventually(lambda: target.eofs == 1, 1)
        new_reader, _ = await connect(proxy.port)
        assert await asyncio.wait_for(new_reader.read(), 1) == b""
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    assert proxy.total_accepted == 3


# --- control surface and binding ---------------------------------------------------------


async def test_manual_fault_control(proxy: FaultProxy, connect: Connect) -> None:
    reader, writer = await connect(proxy.port)
    proxy.set_fault("latency", ms="40")  # as a control endpoint's query string hands it over
    assert proxy.fault is not None
    assert (proxy.fault.name, dict(proxy.fault.params)) == ("latency", {"ms": 40.0})
    assert await round_trip(reader, writer) >= 0.035
    proxy.set_fault("blackhole")  # replaces, does not stack
    assert proxy.fault.name == "blackhole"
    proxy.clear_fault()
    proxy.clear_fault()  # idempotent
    assert proxy.fault is None
    assert await round_trip(reader, writer) < 0.03


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("drop_table", {}, "unknown fault"),
        ("latency", {}, "takes ms"),
        ("latency", {"ms": -1}, "within"),
        ("latency", {"ms": "fast"}, "number"),
        ("latency", {"ms": True}, "number"),
        ("half_open", {"direction": "sideways"}, "upstream or downstream"),
        ("reset", {"now": 1}, "no parameters"),
    ],
)
async def test_invalid_faults_rejected(
    proxy: FaultProxy, name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        proxy.set_fault(name, **params)
    assert proxy.fault is None


async def test_context_managers_do_not_stack(proxy: FaultProxy) -> None:
    with proxy.latency(10), pytest.raises(RuntimeError, match="already active"), proxy.reset():
        pass
    assert proxy.fault is None


async def test_every_fault_is_held_as_its_enum_member(proxy: FaultProxy) -> None:
    params: dict[ProxyFault, dict[str, object]] = {
        ProxyFault.LATENCY: {"ms": 1},
        ProxyFault.HALF_OPEN: {"direction": "upstream"},
        ProxyFault.RESET_SHARE: {"every": 2},
        ProxyFault.BLACKHOLE_SHARE: {"every": 3},
    }
    for fault in ProxyFault:
        proxy.set_fault(fault.value, **params.get(fault, {}))
        assert proxy.fault is not None and proxy.fault.name is fault
    proxy.clear_fault()
    # An error names the fault as the API spells it, not as a Python enum.
    already = pytest.raises(RuntimeError, match="fault 'blackhole' is already")
    with proxy.blackhole(), already, proxy.reset():
        pass


async def test_several_loopback_addresses_share_a_port(target: TcpTarget, connect: Connect) -> None:
    first = FaultProxy("127.0.0.2", 0, HOST, target.port, name="edge")
    await first.start()
    second = FaultProxy("127.0.0.3", first.port, HOST, target.port, name="lb")
    clash = FaultProxy("127.0.0.2", first.port, HOST, target.port)
    try:
        await second.start()
        for p in (first, second):
            reader, writer = await connect(p.port, p.host)
            await round_trip(reader, writer)
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await clash.start()
    finally:
        await clash.stop()
        await second.stop()
        await first.stop()


async def test_stop_resets_open_connections(target: TcpTarget, connect: Connect) -> None:
    proxy = FaultProxy(HOST, 0, HOST, target.port)
    await proxy.stop()  # before start: nothing to do
    await proxy.start()
    reader, writer = await connect(proxy.port)
    await round_trip(reader, writer)
    await proxy.stop()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 1)
    assert proxy.active_connections == 0
