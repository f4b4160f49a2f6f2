"""Legs that share a segment check on each other's news at once, not at their next timer.

When a leg comes back up, every down leg sharing a segment with it is re-dialed now
instead of waiting out its backoff: until it has, its old failure is stale evidence
against a segment that was just shown to work. When a leg drops, every leg sharing a
segment with it that checks on demand (an HTTP leg between two GETs) checks now, so a
path fault convicts within a watchdog on every leg kind.

Each waiting leg is registered under its segments and woken at most once per wait, so a
thousand legs recovering together cost each leg one wake-up, not one per neighbour.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Iterable, Mapping

from t3probe.events import LegEvent


class Wait(enum.Enum):
    # A down leg waiting out its reconnect backoff.
    REDIAL = "redial"
    # An up leg waiting for its next heartbeat.
    RECHECK = "recheck"


class Neighbours:
    def __init__(
        self, segments_by_leg: Mapping[str, Iterable[str]], clock: Callable[[], float]
    ) -> None:
        self._segments = {leg: tuple(segments) for leg, segments in segments_by_leg.items()}
        self._wake = {leg: asyncio.Event() for leg in self._segments}
        self._waiting: dict[Wait, dict[str, set[str]]] = {kind: {} for kind in Wait}
        self._clock = clock
        # Per segment the two latest (monotonic time, leg) that came up: news a leg may
        # have missed while it was busy failing rather than waiting. Two, so a leg can
        # skip its own recovery in O(1).
        self._last_up: dict[str, list[tuple[float, str]]] = {}

    def add(self, leg: str, segments: Iterable[str]) -> None:
        self._segments[leg] = tuple(segments)
        self._wake[leg] = asyncio.Event()

    def remove(self, leg: str) -> None:
        """Forget a leg a reload retired (its task has ended, so it waits no more)."""
        self._segments.pop(leg, None)
        self._wake.pop(leg, None)

    async def wait(self, leg: str, kind: Wait, seconds: float, since: float | None = None) -> bool:
        """Sleep up to ``seconds``; True when a neighbour's news cut the sleep short, or
        (for a re-dial) a neighbour came up after ``since``."""
        if kind is Wait.REDIAL and since is not None and self._came_up_since(leg, since):
            return True
        wake = self._wake[leg]
        wake.clear()
        waiting = self._waiting[kind]
        for segment in self._segments[leg]:
            waiting.setdefault(segment, set()).add(leg)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, seconds)):
                    await wake.wait()
                    return True
            return False
        finally:
            for segment in self._segments[leg]:
                legs = waiting.get(segment)
                if legs is not None:
                    legs.discard(leg)
                    if not legs:
                        del waiting[segment]

    def wake(self, changed: str, kind: Wait) -> None:
        waiting = self._waiting[kind]
        for segment in self._segments.get(changed, ()):
            for leg in waiting.pop(segment, ()):
                wake = self._wake.get(leg)
                if leg != changed and wake is not None:
                    wake.set()

    def _came_up_since(self, leg: str, since: float) -> bool:
        for segment in self._segments[leg]:
            for at, other in self._last_up.get(segment, ()):
                if other != leg and at > since:
                    return True
        return False

    def on_event(self, event: LegEvent) -> None:
        if event.kind == "up":
            now = self._clock()
            for segment in self._segments.get(event.leg, ()):
                latest = [
                    (at, leg) for at, leg in self._last_up.get(segment, ()) if leg != event.leg
                ]
                self._last_up[segment] = [(now, event.leg), *latest[:1]]
            self.wake(event.leg, Wait.REDIAL)
        elif event.kind == "down":
            self.wake(event.leg, Wait.RECHECK)
