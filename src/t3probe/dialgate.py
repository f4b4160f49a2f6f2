"""Spreads the legs' dials over time: a token bucket every connect attempt passes.

A thousand legs dialling at once (start-up, an echo restart that drops them all) means a
thousand TCP connects and upgrades in one loop iteration: the probe's own loop freezes
for hundreds of milliseconds, and that stall is then blamed on the probe itself
(``probe_stall``) or worse, on the path. Slots are handed out at ``rate`` per second after
an initial ``burst``; waiting for a slot is O(1) and needs no lock (GCRA: each caller
reserves the next free instant and sleeps until it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Dials per second and how many may start back to back. A loopback dial costs the loop
# about 0.5 ms (connect, upgrade, first frame): 200 a second keep that under a tenth of a
# core, and 10,000 legs come up in under a minute.
DEFAULT_DIAL_RATE = 200.0
DEFAULT_DIAL_BURST = 20


class DialGate:
    def __init__(
        self,
        monotonic: Callable[[], float],
        rate: float = DEFAULT_DIAL_RATE,
        burst: int = DEFAULT_DIAL_BURST,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"dial gate needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self._monotonic = monotonic
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        # The theoretical arrival time of the next dial: bursts borrow up to tolerance.
        self._tat = -float("inf")

    def reserve(self) -> float:
        """Reserve the next slot; returns how long the caller must wait for it."""
        now = self._monotonic()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def spread(self, legs: int) -> float:
        """Seconds it takes this gate to let ``legs`` dials through after its burst."""
        return max(0.0, legs * self._interval - self._tolerance)
