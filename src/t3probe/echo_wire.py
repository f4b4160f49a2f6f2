"""The echo's connection layer: the caps aiohttp gives an app no hook for.

* Every accepted TCP connection takes a *pending* slot at once (total and per peer
  address) and gives it back at the WebSocket upgrade or when it closes; a connection
  over the cap is closed before aiohttp parses a byte of it.
* After the upgrade every frame header on the wire takes a token from the connection's
  bucket *before* aiohttp's parser sees the frame: empty continuation frames, control
  frames and fragments cost as much as whole messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from t3probe.echo_clients import (
    IPNetwork,
    SlotTable,
    TokenBucket,
    client_key,
    forwarded_client,
)

__all__ = [
    "ADMISSION_KEY",
    "RATE_EXCEEDED_MARKER",
    "Admission",
    "EchoRunner",
    "FrameMeter",
    "frame_meter_of",
]

# The meter tells the echo handler "frame budget spent" in band, as a ping aiohttp parses
# after the last frame that was paid for, so the frames before it are still echoed in
# order and the close follows them. A frame with a reserved opcode after it ends
# aiohttp's stream, so the close that follows does not wait close_timeout for a reply
# that the meter would drop anyway.
RATE_EXCEEDED_MARKER = b"t3probe-echo: frame rate exceeded"
_MARKER_FRAMES = (
    bytes([0x89, len(RATE_EXCEEDED_MARKER)]) + RATE_EXCEEDED_MARKER + bytes([0x83, 0x00])
)


def _header_length(second_byte: int) -> int:
    length_flag = second_byte & 0x7F
    extended = 2 if length_flag == 126 else 8 if length_flag == 127 else 0
    return 2 + extended + (4 if second_byte & 0x80 else 0)


def _payload_length(header: bytearray) -> int:
    length_flag = header[1] & 0x7F
    if length_flag == 126:
        return int.from_bytes(header[2:4], "big")
    if length_flag == 127:
        return int.from_bytes(header[2:10], "big")
    return length_flag


class FrameMeter:
    """Stands in front of aiohttp's WebSocket parser and charges one token per frame.

    It only finds frame boundaries (header lengths and payload lengths); everything
    else, validation included, stays aiohttp's job. On the first frame without a
    token it passes on the bytes before that frame plus the marker, drops the rest
    and calls ``on_exceeded``.
    """

    def __init__(
        self, parser: Any, take: Callable[[], bool], on_exceeded: Callable[[], None]
    ) -> None:
        self._parser = parser
        self._take = take
        self._on_exceeded = on_exceeded
        self._header = bytearray()
        self._payload_left = 0
        self.exceeded = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self.exceeded:
            return False, b""  # reading is paused; whatever was in flight is dropped
        unpaid = self._unpaid_frame_at(data)
        if unpaid is None:
            result: tuple[bool, bytes] = self._parser.feed_data(data)
            return result
        self.exceeded = True
        eof, _ = self._parser.feed_data(bytes(data[:unpaid]) + _MARKER_FRAMES)
        self._on_exceeded()
        return eof, b""

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def _unpaid_frame_at(self, data: bytes | bytearray | memoryview) -> int | None:
        """Charge every frame that starts in ``data``; the offset of the first one
        without a token, or None."""
        pos, end = 0, len(data)
        while pos < end:
            if self._payload_left:
                step = min(self._payload_left, end - pos)
                self._payload_left -= step
                pos += step
                continue
            if not self._header and not self._take():
                return pos
            wanted = 2 if len(self._header) < 2 else _header_length(self._header[1])
            step = min(wanted - len(self._header), end - pos)
            self._header += data[pos : pos + step]
            pos += step
            if len(self._header) >= 2 and len(self._header) == _header_length(self._header[1]):
                self._payload_left = _payload_length(self._header)
                self._header.clear()
        return None


class Admission:
    """The echo's shared counters: pending connections, WebSockets, frame budgets."""

    def __init__(
        self,
        *,
        pending: SlotTable,
        websockets: SlotTable,
        trusted_proxies: Sequence[IPNetwork],
        frames_per_second: float,
        frame_burst: int,
    ) -> None:
        self.pending = pending
        self.websockets = websockets
        self.trusted_proxies = tuple(trusted_proxies)
        self._frames_per_second = frames_per_second
        self._frame_burst = frame_burst
        self.refused_pending = 0

    def peer(self, host: str | None) -> tuple[str, bool]:
        """The key a TCP peer is counted under, and whether it is a trusted proxy."""
        address = forwarded_client(host, (), ())
        trusted = address is not None and any(address in net for net in self.trusted_proxies)
        return client_key(address), trusted

    def client(self, peer_host: str | None, forwarded_for: Sequence[str]) -> str:
        """The key an upgrade request is counted under (X-Forwarded-For from trusted
        proxies only)."""
        return client_key(forwarded_client(peer_host, forwarded_for, self.trusted_proxies))

    def frame_budget(self) -> Callable[[], bool]:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(self._frames_per_second, self._frame_burst, loop.time())
        return lambda: bucket.take(loop.time())


ADMISSION_KEY = web.AppKey("t3probe_echo_admission", Admission)


def _peer_host(transport: asyncio.BaseTransport) -> str | None:
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return None


class _EchoProtocol(web.RequestHandler):
    """aiohttp's per-connection protocol plus the pending slot and the frame meter."""

    __slots__ = ("_admission", "_admitted", "_pending_key", "meter")

    def __init__(self, admission: Admission, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._admission = admission
        self._admitted = False
        self._pending_key: str | None = None
        self.meter: FrameMeter | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        key, trusted = self._admission.peer(_peer_host(transport))
        if self._admission.pending.admit(key, exempt=trusted) is not None:
            # Refused before aiohttp starts on it: no task, no parser, no timer.
            self._admission.refused_pending += 1
            transport.close()
            return
        self._admitted = True
        self._pending_key = key
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._leave_pending()
        if self._admitted:
            super().connection_lost(exc)

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        # aiohttp calls this exactly once, at the WebSocket upgrade, before it feeds the
        # parser the bytes that came with the request: wrapping here meters those too.
        self._leave_pending()
        self.meter = FrameMeter(parser, self._admission.frame_budget(), self._stop_reading)
        # Duck-typed: aiohttp only calls feed_data and feed_eof on its parser.
        stand_in: Any = self.meter
        super().set_parser(stand_in, data_received_cb)

    def _leave_pending(self) -> None:
        if self._pending_key is not None:
            self._admission.pending.release(self._pending_key)
            self._pending_key = None

    def _stop_reading(self) -> None:
        # The flood stays in the client's socket buffers instead of our CPU.
        if self.transport is not None:
            self.transport.pause_reading()


def frame_meter_of(request: web.BaseRequest) -> FrameMeter | None:
    """The meter on an upgraded request's connection; None outside an EchoRunner."""
    protocol = request.protocol
    return protocol.meter if isinstance(protocol, _EchoProtocol) else None


class _EchoHttpServer(web.Server):
    """A ``web.Server`` that builds :class:`_EchoProtocol` instead of ``RequestHandler``.

    aiohttp hard-codes the handler class in ``Server.__call__`` and has no hook to
    choose another, so this copies the stock server's settings, which live in its
    private ``_loop`` and ``_kwargs``. This class is the only place the echo touches
    aiohttp internals (with :meth:`EchoRunner._make_server`); tests/test_echo.py pins
    the behaviour it exists for (pending cap, empty-continuation flood).
    """

    def __init__(self, stock: web.Server, admission: Admission) -> None:
        super().__init__(
            stock.request_handler,
            request_factory=stock.request_factory,
            handler_cancellation=stock.handler_cancellation,
            loop=stock._loop,
            **stock._kwargs,
        )
        self._admission = admission

    def __call__(self) -> web.RequestHandler:
        return _EchoProtocol(self._admission, self, loop=self._loop, **self._kwargs)


class EchoRunner(web.AppRunner):
    """An AppRunner whose connections go through the app's :class:`Admission`."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        return _EchoHttpServer(await super()._make_server(), self.app[ADMISSION_KEY])
