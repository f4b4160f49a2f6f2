"""Hardened reference echo: the dispatch-side ``/probe/ws`` + ``/probe/healthz`` contract.

The endpoint is unauthenticated and reachable from the internet, so every resource a
client can make it hold is capped:

* text frames only (binary -> close 1003); invalid UTF-8 -> 1007 (aiohttp);
* a frame larger than ``max_frame_bytes`` -> 1009, decided from the frame *header*, so an
  oversized frame is never buffered (aiohttp's ``max_msg_size``);
* a per-connection token bucket over every frame *on the wire*, charged before aiohttp
  parses it: text, control frames and empty continuation fragments alike -> 1008;
* at most ``max_connections`` open WebSockets, at most ``max_connections_per_client``
  of them per client address (IPv4 address or IPv6 /64) -> HTTP 429, and the last
  ``reserved_connections`` slots only for clients holding fewer than
  ``reserve_max_per_client`` -> HTTP 503, so a few greedy clients cannot lock a probe out;
* the client address is the TCP peer; ``X-Forwarded-For`` counts only when the peer is
  in ``trusted_proxies`` (its right-most hop outside them is the client);
* at most ``max_pending_connections`` TCP connections that have not upgraded yet, and
  ``max_connections_per_client`` of them per peer (trusted proxies exempt): the rest
  are closed at accept (see echo_wire.py). Behind TLS a connection counts from the end
  of its handshake; the handshake itself is bounded by asyncio's 60 s handshake timeout;
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

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from t3probe.echo_clients import Refusal, SlotTable, TokenBucket, parse_networks
from t3probe.echo_wire import (
    ADMISSION_KEY,
    RATE_EXCEEDED_MARKER,
    Admission,
    EchoRunner,
    FrameMeter,
    frame_meter_of,
)

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
RETRY_AFTER_SECONDS = "5"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoLimits:
    """Every cap the echo enforces; the defaults suit a public deployment."""

    max_frame_bytes: int = 4096
    # Per connection, charged per frame on the wire (the names predate that).
    messages_per_second: float = 20.0
    burst: int = 40
    max_connections: int = 1000
    max_connections_per_client: int = 32
    # None: a tenth of max_connections.
    reserved_connections: int | None = None
    reserve_max_per_client: int = 4
    # None: max_connections.
    max_pending_connections: int | None = None
    trusted_proxies: tuple[str, ...] = ()
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
            "max_connections_per_client": self.max_connections_per_client,
            "reserve_max_per_client": self.reserve_max_per_client,
            "max_pending_connections": self.pending_cap,
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
        if not 0 <= self.reserve < self.max_connections:
            raise ValueError(
                "EchoLimits.reserved_connections must be >= 0 and < EchoLimits.max_connections"
                f" ({self.max_connections}), got {self.reserved_connections!r}"
            )
        if isinstance(self.trusted_proxies, str):
            raise ValueError("EchoLimits.trusted_proxies must be a tuple of networks, not a str")
        parse_networks(self.trusted_proxies, "EchoLimits.trusted_proxies")

    @property
    def reserve(self) -> int:
        if self.reserved_connections is None:
            return self.max_connections // 10
        return self.reserved_connections

    @property
    def pending_cap(self) -> int:
        if self.max_pending_connections is None:
            return self.max_connections
        return self.max_pending_connections

    def admission(self) -> Admission:
        return Admission(
            pending=SlotTable(
                total=self.pending_cap,
                per_client=self.max_connections_per_client,
                reserved=0,
                reserve_max_per_client=self.max_connections_per_client,
            ),
            websockets=SlotTable(
                total=self.max_connections,
                per_client=self.max_connections_per_client,
                reserved=self.reserve,
                reserve_max_per_client=self.reserve_max_per_client,
            ),
            trusted_proxies=parse_networks(self.trusted_proxies, "EchoLimits.trusted_proxies"),
            frames_per_second=self.messages_per_second,
            frame_burst=self.burst,
        )


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
        self.admission = limits.admission()
        self.conns: set[_Conn] = set()
        self.warned_untrusted_forwarding = False
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


def _client_of(request: web.Request, state: _EchoState) -> str:
    forwarded_for = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
    admission = state.admission
    key = admission.client(request.remote, forwarded_for)
    if forwarded_for and not state.warned_untrusted_forwarding:
        _, trusted = admission.peer(request.remote)
        if not trusted:
            # Once per process: it is either a misconfigured proxy (every client then
            # shares the proxy's quota) or a client trying its luck.
            state.warned_untrusted_forwarding = True
            log.warning(
                "X-Forwarded-For from %s ignored: not a trusted proxy"
                " (behind a proxy, set --trusted-proxy)",
                request.remote,
            )
    return key


def _refused(refusal: Refusal) -> web.Response:
    if refusal is Refusal.CLIENT_LIMIT:
        status, text = 429, "too many WebSocket connections from your address\n"
    else:
        status, text = 503, "too many WebSocket connections\n"
    response = web.Response(status=status, text=text, headers={"Retry-After": RETRY_AFTER_SECONDS})
    # A refused client must not keep holding a connection (and a pending slot) by
    # keep-alive.
    response.force_close()
    return response


async def _ws_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE_KEY]
    limits = state.limits
    client = _client_of(request, state)
    refusal = state.admission.websockets.admit(client)
    if refusal is not None:
        return _refused(refusal)
    try:
        ws = web.WebSocketResponse(
            timeout=limits.close_timeout_seconds,
            autoping=False,  # pings are answered by hand so that the marker ping is seen
            heartbeat=limits.ping_interval_seconds,
            compress=False,
            # aiohttp rejects a frame whose length is >= max_msg_size; +1 lets a frame of
            # exactly max_frame_bytes through.
            max_msg_size=limits.max_frame_bytes + 1,
        )
        ws.headers[ECHO_HEADER] = "1"
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # Gone during the upgrade. Returned, the half-made WebSocket would have aiohttp
            # finish it and log a traceback per such client (a flood of them, a flood of
            # tracebacks); a plain answer has nowhere to go and ends quietly.
            return web.Response(status=400, text="connection lost during the upgrade")
        # Only an upgraded WebSocket can be closed by close_all (a dispatch restart).
        conn = _Conn(ws)
        state.conns.add(conn)
        try:
            await _echo(ws, state, frame_meter_of(request))
        except ConnectionResetError:
            # The client vanished mid-reply: routine on a public endpoint, not worth a traceback.
            pass
        finally:
            state.conns.discard(conn)
            if conn.closer is not None:
                with contextlib.suppress(Exception):
                    await conn.closer
    finally:
        # The slot was taken before the first await, so concurrent upgrades cannot
        # overshoot a cap; it is given back however the handler ends.
        state.admission.websockets.release(client)
    return ws


async def _echo(ws: web.WebSocketResponse, state: _EchoState, meter: FrameMeter | None) -> None:
    limits = state.limits
    loop = asyncio.get_running_loop()
    # The frame meter on the connection charges every frame; without it (the app served
    # by a plain AppRunner) whole messages are charged here instead.
    bucket = None if meter else TokenBucket(limits.messages_per_second, limits.burst, loop.time())
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
        rate_exceeded = (
            meter is not None
            and meter.exceeded
            and msg.type is WSMsgType.PING
            and msg.data == RATE_EXCEEDED_MARKER
        ) or (bucket is not None and not bucket.take(loop.time()))
        if rate_exceeded:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"frame rate exceeded")
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
    the connection-level caps (header timeout, header sizes, pending connections, the
    per-frame rate limit) live on the runner; a plain AppRunner charges whole messages."""
    limits = limits or EchoLimits()
    # No route accepts a body; a small cap keeps a POST from buffering anything.
    app = web.Application(client_max_size=limits.max_frame_bytes)
    state = _EchoState(limits)
    app[_STATE_KEY] = state
    app[ADMISSION_KEY] = state.admission
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
    return EchoRunner(
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
    def pending_connection_count(self) -> int:
        """TCP connections accepted and not (yet) upgraded to a WebSocket."""
        return len(self._state.admission.pending)

    @property
    def refused_pending_count(self) -> int:
        """TCP connections closed at accept because the pending caps were reached."""
        return self._state.admission.refused_pending

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
