"""The persistent WebSocket leg: always reading, heartbeating, and watching the clock.

A reader task always awaits the socket, so a RST, a close frame or EOF surfaces the
moment it arrives rather than at the next heartbeat. The watchdog mirrors the real
client: no echo for ``watchdog_seconds`` means a real user would have reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp

from t3probe.legs.base import LegContext, SessionProgress, tls_context
from t3probe.legs.classify import classify
from t3probe.legs.dialing import check_peer, check_proof, open_session
from t3probe.legs.heartbeat import Heartbeats
from t3probe.neighbours import Wait
from t3probe.reasons import ProbeFailure, Reason

CLOSE_TIMEOUT_SECONDS = 1.5
GOING_AWAY = 1001


class WebSocketLeg:
    def __init__(self, ctx: LegContext) -> None:
        self._ctx = ctx
        self._ssl = tls_context(ctx.leg)
        self.progress = SessionProgress()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._heartbeats = Heartbeats(ctx.probe_config.heartbeat_seconds, ctx.budget.watchdog)

    async def run_session(self) -> None:
        self.progress = SessionProgress(evidence_since=self._ctx.clock.monotonic())
        session = open_session(self._ctx, self.progress, self._ssl, keepalive=False)
        transport: asyncio.BaseTransport | None = None
        try:
            ws = await self._connect(session)
            self._ws = ws
            transport = _transport_of(ws)
            await self._probe(ws)
        except asyncio.CancelledError:
            if self._ws is not None:
                # Shutdown: tell the peer we are going away, so it is not counted a drop.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                        await self._ws.close(code=GOING_AWAY, message=b"probe shutting down")
            raise
        finally:
            if self._ws is not None and not self._ws.closed:
                abort(self._ws)
            self._ws = None
            if transport is not None:
                # aiohttp's own close (ours, or its reaction to a close frame or an
                # error) waits for unsent data to drain: forever, if the peer never reads.
                discard(transport)
            await session.close()

    async def close(self) -> None:
        return None  # every session owns and closes its own client session

    async def _connect(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        ctx = self._ctx
        started = time.perf_counter()
        budget = ctx.budget.connect
        try:
            async with asyncio.timeout(budget):
                ws = await session.ws_connect(
                    ctx.leg.url,
                    autoping=True,
                    heartbeat=None,
                    max_msg_size=ctx.probe_config.max_message_bytes,
                    timeout=aiohttp.ClientWSTimeout(
                        ws_receive=None, ws_close=CLOSE_TIMEOUT_SECONDS
                    ),
                )
        except Exception as err:
            # Whatever happened at the redirect's target happened on a route that is not
            # this leg's: the redirect is the failure.
            if self.progress.redirected is not None:
                raise _redirect_refused(self.progress.redirected) from err
            if isinstance(err, TimeoutError):
                phase = self.progress.phase
                raise ctx.timed_out(phase, budget, "connecting the WebSocket") from err
            raise
        upgrade_started = self.progress.upgrade_started or started
        ctx.recorder.observe_connect_phase(
            ctx.leg.name, "upgrade", time.perf_counter() - upgrade_started
        )
        if self.progress.redirected is not None:
            abort(ws)
            raise _redirect_refused(self.progress.redirected)
        check_proof(self.progress)
        check_peer(ctx, ws.get_extra_info("peername"))
        return ws

    async def _probe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        ctx = self._ctx
        self.progress.phase = "session"
        now = ctx.clock.monotonic()
        self.progress.connected_at = now
        self._heartbeats.start(now)
        ctx.recorder.leg_up(ctx.leg.name, self.progress.up_detail(), ctx.connection)
        await first_failure(self._read(ws), self._heartbeat(ws), self._watchdog())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                now = self._ctx.clock.monotonic()
                rtt = self._heartbeats.on_text(message.data, now)
                if rtt is not None:
                    self.progress.evidence_since = now
                    self._ctx.recorder.observe_rtt(self._ctx.leg.name, rtt, self._ctx.connection)
                    lost = self._heartbeats.take_lost()
                    if lost:
                        self._ctx.recorder.heartbeats_lost(self._ctx.leg.name, lost)
            elif message.type is aiohttp.WSMsgType.BINARY:
                continue  # not an echo of ours; the watchdog judges the silence
            elif message.type is aiohttp.WSMsgType.CLOSE:
                code = ws.close_code if ws.close_code is not None else message.data
                raise ProbeFailure(
                    Reason.CLOSED_BY_PEER,
                    f"close frame {code} {str(message.extra or '')[:120]}".strip(),
                    close_code=int(code) if isinstance(code, int) else None,
                )
            elif message.type is aiohttp.WSMsgType.ERROR:
                raise _receive_error(ws)
            else:  # CLOSING / CLOSED without a close frame from the peer
                if self.progress.lost_by_reset():
                    raise ProbeFailure(Reason.RESET, "connection reset (RST), no close frame")
                raise ProbeFailure(
                    Reason.CLOSED_WITHOUT_FRAME,
                    "the peer closed the connection (FIN) without a WebSocket close frame",
                )

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        interval = self._ctx.probe_config.heartbeat_seconds
        while True:
            ping = self._heartbeats.next_ping(self._ctx.clock.monotonic())
            try:
                await ws.send_str(ping)
            except ConnectionResetError:
                # The socket is closing: the reader knows why (a close frame and its code,
                # or EOF) and the watchdog remains the backstop, so let them report it.
                await asyncio.Event().wait()
            # A neighbour's drop cuts the wait short: an echo now says whether this
            # leg still clears the segments they share.
            await self._ctx.pause(Wait.RECHECK, interval)

    async def _watchdog(self) -> None:
        ctx = self._ctx
        watchdog = ctx.budget.watchdog
        while True:
            remaining = self._heartbeats.deadline() - ctx.clock.monotonic()
            if remaining <= 0:
                # The supervisor turns this into probe_stall if the probe itself froze.
                raise ProbeFailure(Reason.RTT_TIMEOUT, f"no echo for {watchdog:g}s")
            # Sleeping until the deadline, then re-checking: an echo may have moved it
            # (only ever later), so once a heartbeat, not more often.
            await asyncio.sleep(remaining + 0.001)


async def first_failure(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run jobs until one fails, then cancel the rest and raise that failure unwrapped.

    Unlike a TaskGroup this keeps the original exception, so its reason survives.
    """
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # In the jobs' order, not the set's: the reader's account of a close wins a race
    # with a heartbeat write failing on the same closing socket.
    for task in tasks:
        if task in done and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    raise ProbeFailure(Reason.INTERNAL_ERROR, "a leg task ended without failing")


def _redirect_refused(redirected: str) -> ProbeFailure:
    return ProbeFailure(
        Reason.HANDSHAKE_REJECTED,
        f"the upgrade was redirected ({redirected}): a redirect would change the route,"
        " so the leg never uses it",
    )


def abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the connection at once, without the closing handshake.

    A dead path would make a graceful close wait out its timeout and delay the drop
    report. aiohttp has no public abort for a client WebSocket, so this and
    :func:`_transport_of` are the places that reach into its response object.
    """
    transport = _transport_of(ws)
    ws._response.close()
    if transport is not None:
        discard(transport)


def _transport_of(ws: aiohttp.ClientWebSocketResponse) -> asyncio.BaseTransport | None:
    connection = ws._response.connection
    return None if connection is None else connection.transport


def discard(transport: asyncio.BaseTransport) -> None:
    """Free the connection's socket now, whatever is left unsent.

    A closing transport keeps its socket until its buffer drains, so a peer that floods
    pings and never reads the pongs would pin one socket (and megabytes of kernel
    buffers) per session. With data unsent the connection is reset instead: the kernel
    drops its buffers at once rather than retrying them to a peer that will not read.
    """
    unsent = _unsent(transport)
    if transport.is_closing() and not unsent:
        return  # already closed, or closing with nothing left to send: it goes by itself
    if unsent:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


def _unsent(transport: asyncio.BaseTransport) -> bool:
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return False
    try:
        # Bytes the kernel still holds for the peer (Linux TIOCOUTQ / SIOCOUTQ).
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return False
    return bool(struct.unpack("i", queued)[0])


def _receive_error(ws: aiohttp.ClientWebSocketResponse) -> ProbeFailure:
    exc = ws.exception()
    if exc is None:
        return ProbeFailure(Reason.IO_ERROR, "WebSocket error without an exception")
    failure = classify(exc, "session")
    if failure.reason is Reason.INTERNAL_ERROR:
        # Protocol violations by the peer (oversize or malformed frames) are I/O, not bugs.
        return ProbeFailure(Reason.IO_ERROR, failure.detail)
    return ProbeFailure(failure.reason, failure.detail)
