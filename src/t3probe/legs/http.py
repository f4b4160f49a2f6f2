"""The HTTP heartbeat leg: a GET every heartbeat straight to the backend process.

A kept-alive session makes each GET measure the process, not TCP setup; the body read
is bounded and the whole request is bounded by the watchdog, as a stalled process
would stall a real client for that long.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from t3probe.legs.base import (
    LegContext,
    SessionProgress,
    dns_timeout,
    tls_context,
)
from t3probe.legs.dialing import check_peer, check_proof, open_session
from t3probe.reasons import ProbeFailure, Reason


class HttpLeg:
    def __init__(self, ctx: LegContext) -> None:
        self._ctx = ctx
        self._ssl = tls_context(ctx.leg)
        self.progress = SessionProgress()
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(self._ctx, self.progress, self._ssl, keepalive=True)
        return self._session

    async def run_session(self) -> None:
        self.progress.phase = "connect"
        self.progress.connected_at = None
        # Same object as the session's resolver holds, so clear it rather than replace it.
        self.progress.extra.clear()
        ctx = self._ctx
        try:
            while True:
                started = ctx.clock.monotonic()
                await self._heartbeat()
                if self.progress.connected_at is None:
                    self.progress.connected_at = ctx.clock.monotonic()
                    ctx.recorder.leg_up(ctx.leg.name, self._up_detail())
                elapsed = ctx.clock.monotonic() - started
                await asyncio.sleep(max(0.0, ctx.probe.heartbeat_seconds - elapsed))
        except BaseException:
            # A failed request may leave a half-read connection: start the next attempt clean.
            await self.close()
            raise

    def _up_detail(self) -> str:
        return "dns answer served stale" if self.progress.extra.get("dns") == "stale" else ""

    async def _heartbeat(self) -> None:
        ctx = self._ctx
        session = self._ensure_session()
        self.progress.extra.pop("proof_missing", None)
        if self.progress.connected_at is not None:
            self.progress.phase = "session"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(ctx.probe.watchdog_seconds):
                async with session.get(ctx.leg.url, allow_redirects=False) as response:
                    self.progress.phase = "session"
                    check_peer(ctx, _peername(response))
                    await _read_bounded(response, ctx.probe.max_http_body_bytes)
                    status = response.status
        except TimeoutError as err:
            if self.progress.phase == "dns":
                raise dns_timeout(ctx) from err
            # Connected but unanswered is the process stalling, not a connect problem.
            if self.progress.phase == "connect":
                raise ProbeFailure(
                    Reason.CONNECT_TIMEOUT,
                    f"no connection after {ctx.probe.watchdog_seconds:g}s"
                    f" (phase {self.progress.phase})",
                ) from err
            raise ProbeFailure(
                Reason.RTT_TIMEOUT, f"GET took over {ctx.probe.watchdog_seconds:g}s"
            ) from err
        ctx.recorder.observe_rtt(ctx.leg.name, time.perf_counter() - started)
        check_proof(self.progress)
        if not ctx.leg.status_is_alive(status):
            raise ProbeFailure(Reason.HTTP_ERROR, f"status {status} outside the expected set")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _peername(response: aiohttp.ClientResponse) -> object:
    connection = response.connection
    if connection is None or connection.transport is None:
        return None
    return connection.transport.get_extra_info("peername")


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> None:
    """Read to the end or ``limit`` bytes: a body that never ends is a stalled process.

    One ``read(limit)`` returns the first chunk that arrives, which would let a backend
    that trickles forever look alive.
    """
    remaining = limit
    while remaining > 0:
        chunk = await response.content.read(remaining)
        if not chunk:
            return
        remaining -= len(chunk)
