"""Hardened reference echo: the dispatch-side ``/probe/ws`` + ``/probe/healthz`` contract.

The endpoint is unauthenticated and reachable from the internet, so every resource a
client can make it hold is capped:

* text frames only (binary -> close 1003); invalid UTF-8 -> 1007 (aiohttp);
* a frame larger than ``max_frame_bytes`` -> 1009, decided from the frame *header*, so an
  oversized frame is never buffered (aiohttp's ``max_msg_size``);
* a per-connection token bucket over every frame, control frames included, so neither
  a text flood nor a ping flood is free -> 1008;
* at most ``max_connections`` open WebSockets; the next upgrade gets HTTP 503;
* an idle timeout: no text frame for ``idle_timeout_seconds`` -> close 1000. Pings and
  pongs do not count as activity, or a client answering our pings could hold a slot
  forever. 1000 rather than 1001 because 1001 ("going away") is what a shutdown sends,
  and keeping the two apart keeps the close code in a probe's drop event meaningful;
* a server ping every ``ping_interval_seconds``; a peer that does not answer within
  half of it is dropped, so dead peers do not pin slots until the idle timeout;
* a request that has not finished its headers within ``header_timeout_seconds`` is
  dropped (slow-loris), and header count/size are capped;
* memory per connection is bounded: aiohttp pauses reading once its frame queue holds
  two read chunks, and the echo awaits the write buffer's drain, so a client that
  sends without reading is throttled by TCP instead of by our memory.
  permessage-deflate is refused: it buys nothing for tiny frames and costs a zlib
  context per connection plus decompression work an attacker controls.

Graceful shutdown closes every WebSocket with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

__all__ = [
    "ECHO_HEADER",
    "EchoLimits",
    "EchoServer",
    "TokenBucket",
    "make_echo_app",
    "make_echo_runner",
    "serve_echo",
    "valid_close_code",
]

WS_PATH = "/probe/ws"
HEALTHZ_PATH = "/probe/healthz"
# Marks answers from this implementation, so a probe or an operator can tell it apart
# from a dispatch service's own echo.
ECHO_HEADER = "x-t3probe-echo"


@dataclass(frozen=True)
class EchoLimits:
    """Every cap the echo enforces; the defaults suit a public deployment."""

    max_frame_bytes: int = 4096
    messages_per_second: float = 20.0
    burst: int = 40
    max_connections: int = 1000
    idle_timeout_seconds: float = 60.0
    ping_interval_seconds: float = 20.0
    header_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 2.0
    max_headers: int = 64
    max_header_line_bytes: int = 8190
    close_codes_kept: int = 256

    def __post_init__(self) -> None:
        positive = {
            "max_frame_bytes": self.max_frame_bytes,
            "messages_per_second": self.messages_per_second,
            "burst": self.burst,
            "max_connections": self.max_connections,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "ping_interval_seconds": self.ping_interval_seconds,
            "header_timeout_seconds": self.header_timeout_seconds,
            "close_timeout_seconds": self.close_timeout_seconds,
            "max_headers": self.max_headers,
            "max_header_line_bytes": self.max_header_line_bytes,
            "close_codes_kept": self.close_codes_kept,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"EchoLimits.{name} must be > 0, got {value!r}")


class TokenBucket:
    """Classic token bucket; the caller passes the time so it stays pure and testable."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def valid_close_code(code: int) -> bool:
    """Codes an endpoint may put on the wire (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _Conn:
    __slots__ = ("closer", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.closer: asyncio.Task[bool] | None = None


class _EchoState:
    def __init__(self, limits: EchoLimits) -> None:
        self.limits = limits
        self.conns: set[_Conn] = set()
        self.close_codes: deque[int] = deque(maxlen=limits.close_codes_kept)

    async def close_all(self, code: int, reason: str) -> None:
        if not valid_close_code(code):
            raise ValueError(f"close code {code} cannot be sent on the wire")
        # A close frame's payload is capped at 125 bytes; cut on a character boundary.
        message = reason.encode()[:123].decode(errors="ignore").encode()
        closers = []
        for conn in list(self.conns):
            if conn.closer is None and not conn.ws.closed:
                # A task of its own, so the connection's handler can wait for the
                # closing handshake to finish instead of tearing the socket down under it.
                conn.closer = asyncio.create_task(conn.ws.close(code=code, message=message))
                closers.append(conn.closer)
        await asyncio.gather(*closers, return_exceptions=True)


_STATE_KEY = web.AppKey("t3probe_echo_state", _EchoState)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _ws_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE_KEY]
    limits = state.limits
    if len(state.conns) >= limits.max_connections:
        raise web.HTTPServiceUnavailable(
            text="too many WebSocket connections\n", headers={"Retry-After": "5"}
        )
    ws = web.WebSocketResponse(
        timeout=limits.close_timeout_seconds,
        autoping=False,  # pings are answered by hand so that they are rate-limited too
        heartbeat=limits.ping_interval_seconds,
        compress=False,
        # aiohttp rejects a frame whose length is >= max_msg_size; +1 lets a frame of
        # exactly max_frame_bytes through.
        max_msg_size=limits.max_frame_bytes + 1,
    )
    ws.headers[ECHO_HEADER] = "1"
    conn = _Conn(ws)
    # Registered before the first await, so concurrent upgrades cannot overshoot the cap.
    state.conns.add(conn)
    try:
        await ws.prepare(request)
        await _echo(ws, state)
    except ConnectionResetError:
        # The client vanished mid-reply: routine on a public endpoint, not worth a traceback.
        pass
    finally:
        state.conns.discard(conn)
        if conn.closer is not None:
            with contextlib.suppress(Exception):
                await conn.closer
    return ws


async def _echo(ws: web.WebSocketResponse, state: _EchoState) -> None:
    limits = state.limits
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(limits.messages_per_second, limits.burst, loop.time())
    last_text = loop.time()
    while True:
        try:
            # A deadline from the last *text* frame, not a per-read timeout: control
            # frames must not keep an otherwise silent connection alive.
            async with asyncio.timeout_at(last_text + limits.idle_timeout_seconds):
                msg = await ws.receive()
        except TimeoutError:
            await ws.close(code=WSCloseCode.OK, message=b"idle timeout")
            return
        if msg.type is WSMsgType.CLOSE:
            state.close_codes.append(int(msg.data))
            return
        if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return  # aiohttp already sent the matching close frame (1009, 1007, 1002...)
        if not bucket.take(loop.time()):
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"message rate exceeded")
            return
        if msg.type is WSMsgType.TEXT:
            last_text = loop.time()
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is WSMsgType.PONG:
            continue
        else:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
            return


async def _on_shutdown(app: web.Application) -> None:
    await app[_STATE_KEY].close_all(WSCloseCode.GOING_AWAY, "server shutting down")


def make_echo_app(limits: EchoLimits | None = None) -> web.Application:
    """The echo as an aiohttp app. Prefer :func:`serve_echo` or :func:`make_echo_runner`:
    the connection-level caps (header timeout, header sizes) live on the runner."""
    limits = limits or EchoLimits()
    # No route accepts a body; a small cap keeps a POST from buffering anything.
    app = web.Application(client_max_size=limits.max_frame_bytes)
    app[_STATE_KEY] = _EchoState(limits)
    app.router.add_get(WS_PATH, _ws_handler)
    app.router.add_get(HEALTHZ_PATH, _healthz)
    app.on_shutdown.append(_on_shutdown)
    return app


class DebugAccessLogger(AbstractAccessLogger):
    """Access lines at DEBUG: every probe heartbeat is a request, and one INFO line each
    would bury everything else the echo logs."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            '%s "%s %s" %d %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def make_echo_runner(limits: EchoLimits | None = None) -> web.AppRunner:
    """The echo app inside a runner that also applies the connection-level caps."""
    limits = limits or EchoLimits()
    return web.AppRunner(
        make_echo_app(limits),
        # Also bounds how long a connection may take to send its first request: aiohttp
        # arms this timer at accept, and partial headers do not re-arm it (slow-loris).
        keepalive_timeout=limits.header_timeout_seconds,
        max_headers=limits.max_headers,
        max_line_size=limits.max_header_line_bytes,
        max_field_size=limits.max_header_line_bytes,
        shutdown_timeout=limits.close_timeout_seconds + 1.0,
        access_log_class=DebugAccessLogger,
    )


class EchoServer:
    """A running echo: its port, its open connections, and the "close(code)" fault."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, state: _EchoState) -> None:
        self._runner = runner
        self._site = site
        self._state = state
        self._stopped = False

    @property
    def port(self) -> int:
        return self._site.port

    @property
    def connection_count(self) -> int:
        return len(self._state.conns)

    @property
    def close_codes_received(self) -> list[int]:
        """Codes of the close frames clients initiated (newest last, bounded).

        Replies to our own close frames are not recorded: they echo our code back.
        """
        return list(self._state.close_codes)

    async def close_all(self, code: int, reason: str = "") -> None:
        """Close every open WebSocket with ``code``; returns once the handshakes end."""
        await self._state.close_all(code, reason)

    async def stop(self) -> None:
        """Stop listening, close WebSockets with 1001, then release everything."""
        if not self._stopped:
            self._stopped = True
            await self._runner.cleanup()


async def serve_echo(
    host: str,
    port: int,
    limits: EchoLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> EchoServer:
    """Start the echo on ``host:port`` (0 picks a port); bind errors propagate."""
    runner = make_echo_runner(limits)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return EchoServer(runner, site, runner.app[_STATE_KEY])
