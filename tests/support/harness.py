"""Test peers, an in-process probe and small network helpers, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from t3probe.config import ProbeConfig, build_config
from t3probe.daemon import Probe
from t3probe.events import LegEvent
from tests.support.env import TIME_UNIT

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_tcp_server(handler: StreamHandler) -> AsyncIterator[int]:
    """A bare TCP server on 127.0.0.1 running ``handler`` per connection; yields its port.

    A client hanging up ends a connection quietly; every handler is cancelled on exit.
    """
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` on a free 127.0.0.1 port: its runner (to clean up) and the port."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site.port


def free_port() -> int:
    """A loopback port nothing listens on now: for a server started later, or a refusal."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(predicate: Callable[[], bool], within: float) -> None:
    """Poll state that has no event to wait on."""
    for _ in range(max(1, int(within / 0.01))):
        if predicate():
            return
        await asyncio.sleep(0.01)
    assert predicate(), f"not true within {within} s"


def rst(transport: Any) -> None:
    """Abort with a TCP RST, as a crashed peer or a middlebox would."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Peer:
    """An aiohttp server whose paths each misbehave in one named way."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.close_codes: list[int] = []
        self.sockets: list[web.WebSocketResponse] = []
        # /probe/ws answers this late (kept below the heartbeat, so echoes stay in order)
        # and, when set, leaves every n-th message unanswered; /ok answers this late.
        self.echo_delay = 0.0
        self.skip_every = 0
        self.answer_delay = 0.0

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        received = 0
        async for message in ws:
            received += 1
            if self.skip_every and received % self.skip_every == 0:
                continue
            if self.echo_delay:
                await asyncio.sleep(self.echo_delay)
            await ws.send_str(message.data)
        if ws.close_code is not None:
            self.close_codes.append(ws.close_code)
        return ws

    async def _silent(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass  # swallow heartbeats: a path that accepts but never answers
        return ws

    async def _close_after_first(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.close(code=int(request.match_info["code"]), message=b"bye")
        return ws

    async def _close_at_once(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=int(request.match_info["code"]), message=b"not today")
        return ws

    async def _rst_after_first(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        assert request.transport is not None
        rst(request.transport)
        return ws

    async def _fin_after_first(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        assert request.transport is not None
        request.transport.close()  # a FIN, no close frame: as a process that died
        return ws

    async def _reject(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="no upgrade for you")

    async def _ok(self, request: web.Request) -> web.Response:
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return web.json_response({"ok": True})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _stall(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    async def start(self, ssl_context: Any = None, host: str = "127.0.0.1") -> Peer:
        app = web.Application()
        app.router.add_get("/probe/ws", self._echo)
        app.router.add_get("/silent", self._silent)
        app.router.add_get("/close/{code}", self._close_after_first)
        app.router.add_get("/close-now/{code}", self._close_at_once)
        app.router.add_get("/rst", self._rst_after_first)
        app.router.add_get("/fin", self._fin_after_first)
        app.router.add_get("/reject", self._reject)
        app.router.add_get("/ok", self._ok)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/stall", self._stall)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, 0, ssl_context=ssl_context)
        await site.start()
        self.port = site.port
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def probe_config(legs: list[dict[str, Any]], **overrides: Any) -> ProbeConfig:
    settings: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "heartbeat_seconds": 0.2 * TIME_UNIT,
        "watchdog_seconds": 0.6 * TIME_UNIT,
        "probe_stall_seconds": 0.4 * TIME_UNIT,
        "attribution_window_seconds": 1.0 * TIME_UNIT,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2 * TIME_UNIT,
        "legs": legs,
    }
    settings.update(overrides)
    return build_config(settings)


def leg(name: str, url: str, kind: str = "websocket", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "url": url, "segments": [f"{name}_path"], **extra}


class RunningProbe:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.events: list[LegEvent] = []
        self._changed = asyncio.Event()
        self.lines: list[str] = []
        probe.recorder.subscribe(self._on_event)

    def _on_event(self, event: LegEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, leg: str, kind: str, timeout: float = 5.0, after: int = 0) -> LegEvent:
        """The first event of ``kind`` for ``leg`` beyond the first ``after`` events."""
        async with asyncio.timeout(timeout * TIME_UNIT):
            while True:
                for event in self.events[after:]:
                    if event.leg == leg and event.kind == kind:
                        return event
                self._changed.clear()
                await self._changed.wait()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.probe.registry.get_sample_value(name, labels)


@contextlib.asynccontextmanager
async def running_probe(config: ProbeConfig) -> AsyncIterator[RunningProbe]:
    lines: list[str] = []
    probe = Probe(config, registry=CollectorRegistry(), emit_line=lines.append)
    handle = RunningProbe(probe)
    handle.lines = lines
    await probe.start()
    try:
        yield handle
    finally:
        await probe.stop()


def every_kind_config(peer: Peer) -> ProbeConfig:
    """A WebSocket leg, an HTTP leg and a DoH leg whose server refuses: every metric
    family the probe exports shows in its exposition."""
    doh = {"kind": "doh", "servers": [f"https://127.0.0.1:{free_port()}/dns-query"],
           "timeout_seconds": 0.1}  # fmt: skip
    return probe_config(
        [
            leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws"),
            leg("http", f"http://127.0.0.1:{peer.port}/ok", kind="http"),
            leg("doh", f"ws://t3.lab.test:{peer.port}/probe/ws", resolver=doh),
        ]
    )
