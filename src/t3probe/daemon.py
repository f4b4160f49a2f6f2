"""Wires config, legs, recorder and HTTP server into one running probe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from t3probe.clock import Clock, SystemClock
from t3probe.config import AnyLegConfig, ProbeConfig
from t3probe.legs.base import Leg, LegContext
from t3probe.legs.budget import LegBudget
from t3probe.legs.registry import build_leg
from t3probe.linewriter import LineWriter
from t3probe.looplag import LoopLagMonitor
from t3probe.metrics import ProbeMetrics
from t3probe.neighbours import Neighbours
from t3probe.reasons import DnsFailure
from t3probe.recorder import Recorder
from t3probe.resolvers.factory import build_resolver
from t3probe.server import LIVENESS_TOLERANCE_SECONDS, exposition_of, make_app
from t3probe.supervisor import supervise

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_SECONDS = 3.0
VERDICT_REFRESH_SECONDS = 0.5


class ListenError(Exception):
    """The HTTP surface could not bind its address."""


class Probe:
    def __init__(
        self,
        config: ProbeConfig,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        emit_line: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock if clock is not None else SystemClock()
        self.metrics = ProbeMetrics(self.registry, config)
        self._line_writer: LineWriter | None = None
        if emit_line is None:
            self._line_writer = emit_line = LineWriter(sys.stdout)
        self.recorder = Recorder(config, self.metrics, self.clock, emit_line)
        self.lag = LoopLagMonitor(self.clock, self.metrics)
        self.neighbours = Neighbours({leg.name: leg.segments for leg in config.legs})
        self.recorder.subscribe(self.neighbours.on_event)
        self._rng = rng if rng is not None else random.Random()
        self._legs: list[tuple[Leg, LegContext]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._ready = False
        self.port = 0

    @property
    def legs(self) -> tuple[tuple[Leg, LegContext], ...]:
        """The running legs with their contexts (empty before start and after stop)."""
        return tuple(self._legs)

    def make_leg(self, leg_config: AnyLegConfig) -> tuple[Leg, LegContext]:
        """Build a leg, its resolver and its context; nothing runs until supervised."""
        name = leg_config.name

        def on_dns_failure(reason: DnsFailure) -> None:
            self.recorder.dns_failure(name, reason)

        def on_server_state(server: str, up: bool) -> None:
            self.recorder.doh_server_state(name, server, up)

        budget = LegBudget.of(self.config, leg_config)
        resolver = build_resolver(leg_config, budget, on_dns_failure, self.clock, on_server_state)
        ctx = LegContext(
            self.config,
            leg_config,
            budget,
            self.recorder,
            self.clock,
            self.lag,
            resolver,
            self.neighbours,
        )
        return build_leg(ctx), ctx

    async def start(self) -> None:
        # Legs (and their TLS contexts and resolvers) first: a broken CA file must fail
        # before the port is bound, not after.
        self._legs = [self.make_leg(leg_config) for leg_config in self.config.legs]
        app = make_app(
            self.recorder,
            exposition_of(self.registry),
            lambda: self.lag.alive(LIVENESS_TOLERANCE_SECONDS),
            lambda: self._ready,
        )
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        host, port = self.config.listen_address
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise ListenError(f"cannot listen on {self.config.listen}: {err.strerror}") from err
        self.port = site.port
        self._spawn(self.lag.run(), "loop-lag")
        self._spawn(self._refresh_verdict(), "verdict")
        for leg, ctx in self._legs:
            self._spawn(supervise(leg, ctx, self._rng), f"leg-{ctx.leg.name}")
        self._ready = True
        log.info("t3probe listening on %s:%d with %d legs", host, self.port, len(self._legs))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _refresh_verdict(self) -> None:
        # The window sliding forward changes the verdict without any new event.
        while True:
            await asyncio.sleep(VERDICT_REFRESH_SECONDS)
            try:
                self.recorder.refresh_verdict()
            except Exception:
                log.exception("refreshing the verdict failed")

    async def stop(self) -> None:
        self._ready = False
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_BUDGET_SECONDS)
        for leg, ctx in self._legs:
            with contextlib.suppress(Exception):
                await leg.close()
            with contextlib.suppress(Exception):
                await ctx.resolver.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._tasks.clear()
        self._legs.clear()
        if self._line_writer is not None:
            await asyncio.to_thread(self._line_writer.close)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (also as PID 1 in a container)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_until_signalled(probe: Probe) -> int:
    stop = stop_on_signals()
    await probe.start()
    try:
        await stop.wait()
    finally:
        log.info("t3probe shutting down")
        await probe.stop()
    return 0
