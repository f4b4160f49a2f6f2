"""Several connections of one leg dropping together, as one fact. Pure.

A load balancer losing a backend closes every connection it held at once: the runbook's
"many same-second cancels = a shared segment broke". A leg with several connections sees
that as drops of some of them within a short interval; each drop is its own ``down``
event, and the interval, once over, is summed up as one burst.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from t3probe.reasons import Reason


@dataclass(frozen=True)
class Burst:
    dropped: int
    of: int
    first_at: float
    last_at: float
    reasons: tuple[tuple[Reason, int], ...]

    @property
    def interval(self) -> float:
        return self.last_at - self.first_at

    @property
    def reason(self) -> Reason:
        """The most common reason (the first seen among equals): ``reasons`` is in that
        order."""
        return self.reasons[0][0]

    def detail(self) -> str:
        counts = ", ".join(f"{reason.value} x{count}" for reason, count in self.reasons)
        return (
            f"{self.dropped} of {self.of} connections dropped within"
            f" {self.interval:.3f}s ({counts})"
        )


@dataclass
class BurstWindow:
    """The drops of one leg since its first drop in the current interval."""

    connections: int
    first_at: float
    last_at: float = 0.0
    dropped: set[int] = field(default_factory=set)
    reasons: collections.Counter[Reason] = field(default_factory=collections.Counter)

    def add(self, at: float, connection: int, reason: Reason) -> None:
        self.last_at = max(self.last_at, at)
        # A connection that drops twice in the interval is still one connection lost.
        if connection not in self.dropped:
            self.dropped.add(connection)
            self.reasons[reason] += 1

    def over(self, now: float, interval: float) -> bool:
        return now - self.first_at >= interval

    def burst(self) -> Burst | None:
        """The burst this interval was, or None for a lone drop."""
        if len(self.dropped) < 2:
            return None
        return Burst(
            len(self.dropped),
            self.connections,
            self.first_at,
            self.last_at,
            tuple(self.reasons.most_common()),
        )


class BurstTracker:
    """Open intervals per leg; only legs that dropped recently cost anything."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._open: dict[str, BurstWindow] = {}

    def drop(self, leg: str, connections: int, connection: int, reason: Reason, at: float) -> None:
        if connections < 2:
            return
        window = self._open.get(leg)
        if window is None:
            window = self._open[leg] = BurstWindow(connections, at, at)
        window.add(at, connection, reason)

    def forget(self, leg: str) -> None:
        self._open.pop(leg, None)

    def due(self, now: float) -> list[tuple[str, Burst]]:
        """Close the intervals that are over; the bursts among them, oldest first."""
        closed = [leg for leg, window in self._open.items() if window.over(now, self.interval)]
        bursts = []
        for leg in closed:
            burst = self._open.pop(leg).burst()
            if burst is not None:
                bursts.append((leg, burst))
        return sorted(bursts, key=lambda item: item[1].first_at)
