"""The probe's distrust of itself: how late does its own event loop run callbacks?"""

from __future__ import annotations

import asyncio
import collections

from t3probe.clock import Clock
from t3probe.metrics import ProbeMetrics


class LoopLagMonitor:
    """Sleeps a fixed interval and records how much later than asked it woke up."""

    def __init__(self, clock: Clock, metrics: ProbeMetrics, interval: float = 0.25) -> None:
        self._clock = clock
        self._metrics = metrics
        self._interval = interval
        # (monotonic time, lag) of recent ticks; bounded to a few minutes of history.
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=1200)
        self.last_tick: float = clock.monotonic()

    async def run(self) -> None:
        while True:
            before = self._clock.monotonic()
            await asyncio.sleep(self._interval)
            now = self._clock.monotonic()
            lag = max(0.0, now - before - self._interval)
            self.last_tick = now
            self._samples.append((now, lag))
            self._metrics.loop_lag.observe(lag)

    def max_lag_within(self, seconds: float) -> float:
        """Worst lag seen in the last ``seconds``, counting a tick that is overdue now."""
        now = self._clock.monotonic()
        overdue = max(0.0, now - self.last_tick - self._interval)
        recent = (lag for at, lag in self._samples if now - at <= seconds)
        return max(overdue, max(recent, default=0.0))

    def alive(self, tolerance: float) -> bool:
        return self._clock.monotonic() - self.last_tick <= self._interval + tolerance
