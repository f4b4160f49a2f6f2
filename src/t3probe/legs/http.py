"""The HTTP heartbeat leg: a GET every heartbeat straight to the backend process.

A kept-alive session makes each GET measure the process, not TCP setup; the body read
is bounded and the whole request is bounded by the watchdog, as a stalled process
would stall a real client for that long.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from t3probe.config import HttpLegConfig
from t3probe.legs.base import LegContext, SessionProgress, tls_context
from t3probe.legs.dialing import check_peer, check_proof, open_session
from t3probe.neighbours import Wait
from t3probe.reasons import ProbeFailure, Reason


class HttpLeg:
    def __init__(self, ctx: LegContext) -> None:
        if not isinstance(ctx.leg, HttpLegConfig):
            raise TypeError(f"HttpLeg needs an http leg config, got {ctx.leg.kind}")
        self._ctx = ctx
        self._config = ctx.leg
        self._ssl = tls_context(ctx.leg)
        self.progress = SessionProgress()
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(self._ctx, self.progress, self._ssl, keepalive=True)
        return self._session

    async def run_session(self) -> None:
        # A new connection starts with its lookup; the dialing moves the phase on.
        self.progress.phase = "dns"
        self.progress.connected_at = None
        # Same object as the session's resolver holds, so reset it rather than replace it.
        self.progress.dns_stale = False
        ctx = self._ctx
        self.progress.evidence_since = ctx.clock.monotonic()
        try:
            while True:
                started = ctx.clock.monotonic()
                await self._heartbeat()
                self.progress.evidence_since = ctx.clock.monotonic()
                if self.progress.connected_at is None:
                    self.progress.connected_at = ctx.clock.monotonic()
                    ctx.recorder.leg_up(ctx.leg.name, self.progress.up_detail(), ctx.connection)
                elapsed = ctx.clock.monotonic() - started
                # A neighbour's drop cuts the wait short: this leg checks the path now.
                await ctx.pause(Wait.RECHECK, ctx.probe_config.heartbeat_seconds - elapsed)
        except BaseException:
            # A failed request may leave a half-read connection: start the next attempt clean.
            await self.close()
            raise

    async def _heartbeat(self) -> None:
        ctx = self._ctx
        session = self._ensure_session()
        self.progress.proof_missing = None
        connected = self.progress.connected_at is not None
        if connected:
            self.progress.phase = "session"
        if connected:
            # The watchdog counts from the last answer, not from this GET: a real client
            # gives up that long after it last heard from the server.
            since_answer = ctx.clock.monotonic() - self.progress.evidence_since
            budget = max(0.0, ctx.budget.watchdog - since_answer)
        else:
            budget = ctx.budget.connect
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                async with session.get(ctx.leg.url, allow_redirects=False) as response:
                    self.progress.phase = "session"
                    check_peer(ctx, _peername(response))
                    await _read_bounded(response, ctx.probe_config.max_http_body_bytes)
                    status = response.status
        except TimeoutError as err:
            # Connected but unanswered is the process stalling, not a connect problem: the
            # dialing puts an HTTP leg in its session as soon as the connection is up.
            seconds = budget if not connected else ctx.budget.watchdog
            raise ctx.timed_out(self.progress.phase, seconds, "GET") from err
        ctx.recorder.observe_rtt(ctx.leg.name, time.perf_counter() - started, ctx.connection)
        check_proof(self.progress)
        if not self._config.status_is_alive(status):
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
