"""Runs one leg forever: reconnects with capped, jittered backoff and keeps it isolated.

Nothing a leg raises escapes this loop: a bug becomes ``internal_error`` (logged with
its traceback, URLs redacted) and the leg restarts, while other legs and the HTTP server carry on.
"""

from __future__ import annotations

import asyncio
import logging
import random

from t3probe.dialgate import DialGate
from t3probe.legs.base import Leg, LegContext
from t3probe.legs.classify import classify
from t3probe.legs.dialing import localise
from t3probe.neighbours import Wait
from t3probe.reasons import NON_PATH_REASONS, Classified, Reason
from t3probe.redact import redact_exception

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff, capped, with full jitter in [delay/2, delay]."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self._initial = initial
        self._maximum = maximum
        self._rng = rng
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        # Bounded exponent: the delay is capped long before 2**attempt overflows.
        ceiling = min(self._maximum, self._initial * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)


def blame_own_stall(failure: Classified, lag: float, stall_seconds: float) -> Classified:
    """Any path failure seen while the probe's own loop was frozen is the probe's fault.

    A frozen probe misses pings and echoes, so peers and timers give up on it; that says
    nothing about the path, whichever way the failure surfaced. ``lag`` is the worst
    loop lag in the time the failure could have been caused in.
    """
    if failure.reason in NON_PATH_REASONS:
        return failure
    if lag < stall_seconds:
        return failure
    detail = f"{failure.detail}; the probe's own event loop stalled {lag:.1f}s"
    return Classified(Reason.PROBE_STALL, detail[:300], failure.close_code)


async def supervise(
    leg: Leg,
    ctx: LegContext,
    rng: random.Random,
    gate: DialGate | None = None,
    first_dial_within: float = 0.0,
) -> None:
    """Run ``leg`` forever. Every attempt first waits for a slot at ``gate``; the first
    one also waits a random share of ``first_dial_within``, so legs started together
    spread their dials instead of queueing in start order."""
    config = ctx.probe_config
    backoff = Backoff(config.backoff_initial_seconds, config.backoff_max_seconds, rng)
    name = ctx.leg.name if ctx.leg.connections == 1 else f"{ctx.leg.name}[{ctx.connection}]"
    if first_dial_within > 0:
        await asyncio.sleep(rng.uniform(0, first_dial_within))
    while True:
        try:
            if gate is not None:
                await gate.acquire()
            await leg.run_session()
            failure = Classified(Reason.INTERNAL_ERROR, "leg session returned without failing")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets a reason; a bug is logged
            failure = localise(classify(exc, leg.progress.phase), leg.progress, ctx.leg.host)
            if failure.reason is Reason.INTERNAL_ERROR:
                log.error(
                    "leg %s: internal error; restarting the leg\n%s", name, redact_exception(exc)
                )
        # Only a stall since the leg last succeeded can have caused this failure.
        lag = ctx.lag.max_lag_within(ctx.clock.monotonic() - leg.progress.evidence_since)
        failure = blame_own_stall(failure, lag, config.effective_probe_stall)
        age = leg.progress.age(ctx.clock.monotonic())
        if age is not None and age >= ctx.budget.watchdog:
            # It held for a while: the path worked, so the next reconnect should be prompt.
            # A peer that closes right after the upgrade keeps the backoff growing.
            backoff.reset()
        try:
            ctx.recorder.leg_down(
                ctx.leg.name,
                failure,
                age,
                attempt_started=leg.progress.evidence_since,
                connection=ctx.connection,
            )
        except Exception as exc:  # noqa: BLE001 - logged, redacted, below
            log.error("leg %s: recording a drop failed\n%s", name, redact_exception(exc))
        # A neighbour that came back while this attempt ran has already been announced:
        # re-dial at once instead of waiting out the backoff on stale evidence.
        await ctx.pause(Wait.REDIAL, backoff.next_delay(), since=leg.progress.evidence_since)
