"""Wires config, legs, recorder and HTTP server into one running probe."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import sys
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from t3probe.clock import Clock, SystemClock
from t3probe.config import AnyLegConfig, ProbeConfig
from t3probe.dialgate import DialGate
from t3probe.eventloop import running_loop_name
from t3probe.legs.base import Leg, LegContext
from t3probe.legs.budget import LegBudget
from t3probe.legs.registry import build_leg
from t3probe.linewriter import LineWriter
from t3probe.looplag import LoopLagMonitor
from t3probe.metrics import ProbeMetrics
from t3probe.neighbours import Neighbours
from t3probe.reasons import DnsFailure
from t3probe.recorder import Recorder
from t3probe.reload import Reloader, ReloadResult
from t3probe.reloadplan import ReloadPlan, plan_reload
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
        config_source: Callable[[], ProbeConfig] | None = None,
        dial_gate: DialGate | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock if clock is not None else SystemClock()
        self.metrics = ProbeMetrics(self.registry, config)
        self.metrics.reload_success_time.set(self.clock.wall())
        self._line_writer: LineWriter | None = None
        if emit_line is None:
            self._line_writer = emit_line = LineWriter(sys.stdout)
        self.recorder = Recorder(config, self.metrics, self.clock, emit_line)
        self.lag = LoopLagMonitor(self.clock, self.metrics)
        self.recorder.loop_lag = self.lag.max_lag_within
        self.neighbours = Neighbours(
            {leg.name: leg.segments for leg in config.legs}, self.clock.monotonic
        )
        self.recorder.subscribe(self.neighbours.on_event)
        self._rng = rng if rng is not None else random.Random()
        # Every connect attempt of every leg passes this one gate (docs/benchmarks.md).
        self.dial_gate = dial_gate if dial_gate is not None else DialGate(self.clock.monotonic)
        self._freeze_gc = freeze_gc
        # Per leg, one (leg, context) per connection; they share the leg's resolver.
        self._legs: dict[str, tuple[tuple[Leg, LegContext], ...]] = {}
        self._leg_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._ready = False
        self.port = 0
        self._reloader = (
            None
            if config_source is None
            else Reloader(config_source, self.apply, self.metrics, self.clock)
        )

    @property
    def legs(self) -> tuple[tuple[Leg, LegContext], ...]:
        """The running legs' connections with their contexts (empty before start and
        after stop)."""
        return tuple(entry for entries in self._legs.values() for entry in entries)

    def make_leg(
        self, leg_config: AnyLegConfig, config: ProbeConfig | None = None
    ) -> tuple[tuple[Leg, LegContext], ...]:
        """Build a leg's resolver and, per connection, the leg and its context; nothing
        runs until supervised."""
        name = leg_config.name
        config = self.config if config is None else config

        def on_dns_failure(reason: DnsFailure) -> None:
            self.recorder.dns_failure(name, reason)

        def on_server_state(server: str, up: bool) -> None:
            self.recorder.doh_server_state(name, server, up)

        budget = LegBudget.of(config, leg_config)
        resolver = build_resolver(leg_config, budget, on_dns_failure, self.clock, on_server_state)
        contexts = [
            LegContext(
                config,
                leg_config,
                budget,
                self.recorder,
                self.clock,
                self.lag,
                resolver,
                self.neighbours,
                connection=index,
            )
            for index in range(leg_config.connections)
        ]
        return tuple((build_leg(ctx), ctx) for ctx in contexts)

    async def start(self) -> None:
        self.metrics.event_loop_info.labels(loop=running_loop_name()).set(1)
        # Legs (and their TLS contexts and resolvers) first: a broken CA file must fail
        # before the port is bound, not after.
        self._legs = {leg.name: self.make_leg(leg) for leg in self.config.legs}
        app = make_app(
            self.recorder,
            exposition_of(self.registry),
            lambda: self.lag.alive(LIVENESS_TOLERANCE_SECONDS),
            lambda: self._ready,
            self.reload,
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
        spread = self._first_dial_spread(self._connections(self._legs))
        for name in self._legs:
            self._supervise(name, spread)
        if self._freeze_gc:
            # The ramp allocates what every leg keeps (sessions, sockets, tasks): no full
            # collection walks it meanwhile, and once every leg has dialled it is frozen.
            gc.freeze()
            gc.disable()
            settle = (
                self.dial_gate.spread(self._connections(self._legs))
                + 2 * self.config.watchdog_seconds
            )
            self._spawn(_freeze_gc_after(settle), "gc-freeze")
        self._ready = True
        log.info("t3probe listening on %s:%d with %d legs", host, self.port, len(self._legs))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    @staticmethod
    def _connections(legs: dict[str, tuple[tuple[Leg, LegContext], ...]]) -> int:
        return sum(len(entries) for entries in legs.values())

    def _first_dial_spread(self, legs: int) -> float:
        # Legs starting together dial in random order over the time the gate needs for
        # them anyway (at most a heartbeat): a handful start at once, as before.
        return min(self.config.heartbeat_seconds, self.dial_gate.spread(legs))

    def _supervise(self, name: str, first_dial_within: float = 0.0) -> None:
        self._leg_tasks[name] = [
            asyncio.create_task(
                supervise(leg, ctx, self._rng, self.dial_gate, first_dial_within),
                name=f"leg-{name}" if ctx.connection == 0 else f"leg-{name}-{ctx.connection}",
            )
            for leg, ctx in self._legs[name]
        ]

    async def _retire(self, names: Collection[str]) -> None:
        """Stop legs: cancelling closes each WebSocket with 1001 and counts no drop."""
        tasks = [
            task for name in names if name in self._leg_tasks for task in self._leg_tasks.pop(name)
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_BUDGET_SECONDS)
        for name in names:
            entries = self._legs.pop(name, ())
            for leg, _ in entries:
                with contextlib.suppress(Exception):
                    await leg.close()
            if entries:
                with contextlib.suppress(Exception):
                    await entries[0][1].resolver.close()

    async def apply(self, config: ProbeConfig) -> ReloadPlan:
        """Move the running probe to ``config``, leaving unchanged legs untouched.

        Raises (changing nothing) when the config cannot be applied live.
        """
        plan = plan_reload(self.config, config)
        # Every new leg is built before anything stops: a leg that cannot be built
        # rejects the whole config while the old one keeps running.
        built = {leg.name: self.make_leg(leg, config) for leg in plan.launched}
        await self._retire(plan.retired)
        for name in plan.retired:
            self.neighbours.remove(name)
        for leg_config in plan.launched:
            self.neighbours.add(leg_config.name, leg_config.segments)
        self.recorder.reconfigure(config, plan.retired, plan.launched)
        self.config = config
        spread = self._first_dial_spread(self._connections(built))
        for name, entry in built.items():
            self._legs[name] = entry
            self._supervise(name, spread)
        return plan

    async def reload(self) -> ReloadResult:
        """Re-read the config source and apply it; a failure keeps the old config."""
        if self._reloader is None:
            return ReloadResult(False, "this probe has no config source to reload from")
        if not self._ready:
            return ReloadResult(False, "the probe is starting or stopping; try again")
        return await self._reloader.reload()

    async def _refresh_verdict(self) -> None:
        # The window sliding forward changes the verdict without any new event.
        while True:
            await asyncio.sleep(VERDICT_REFRESH_SECONDS)
            try:
                self.recorder.flush_bursts()
                self.recorder.refresh_verdict()
            except Exception:
                log.exception("refreshing the verdict failed")

    async def stop(self) -> None:
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await self._retire(list(self._legs))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_BUDGET_SECONDS)
        if self._runner is not None:
            await self._runner.cleanup()
        self._tasks.clear()
        self._legs.clear()
        if self._line_writer is not None:
            await asyncio.to_thread(self._line_writer.close)


async def _freeze_gc_after(seconds: float) -> None:
    """Move what exists now out of the cyclic collector's reach (``gc.freeze``), then
    let the collector (disabled for the ramp) run again.

    Long-lived objects are what a full collection walks: with a thousand connected legs
    that walk stopped the loop for a few hundred milliseconds at a time (docs/benchmarks.md),
    and no leg's objects are garbage while the leg runs. A leg retired later is still
    freed by reference counting; only a reference cycle of it would stay.
    """
    try:
        await asyncio.sleep(seconds)
        gc.freeze()
    finally:
        gc.enable()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (also as PID 1 in a container)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def reload_on_sighup(probe: Probe) -> None:
    """SIGHUP re-reads the config, as it does for Prometheus (its default would kill us)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[ReloadResult]] = set()

    def on_hup() -> None:
        task = loop.create_task(probe.reload(), name="reload")
        pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)


async def run_until_signalled(probe: Probe) -> int:
    stop = stop_on_signals()
    reload_on_sighup(probe)
    await probe.start()
    try:
        await stop.wait()
    finally:
        log.info("t3probe shutting down")
        await probe.stop()
    return 0
