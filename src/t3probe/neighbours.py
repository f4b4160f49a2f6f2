"""Legs that share a segment check on each other's news at once, not at their next timer.

When a leg comes back up, every down leg sharing a segment with it is re-dialed now
instead of waiting out its backoff: until it has, its old failure is stale evidence
against a segment that was just shown to work. When a leg drops, every leg sharing a
segment with it that checks on demand (an HTTP leg between two GETs) checks now, so a
path fault convicts within a watchdog on every leg kind.

Each waiting leg is registered under its segments and woken at most once per wait, so a
thousand legs recovering together cost each leg one wake-up, not one per neighbour. A leg
of several connections waits once per connection, and its connections are each other's
neighbours: one coming back re-dials the others.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable, Mapping

from t3probe.events import LegEvent

# A waiter: a leg's name and the index of one of its connections.
Waiter = tuple[str, int]


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
        self._wake: dict[Waiter, asyncio.Future[bool]] = {}
        self._waiting: dict[Wait, dict[str, set[Waiter]]] = {kind: {} for kind in Wait}
        self._clock = clock
        # Per segment the two latest (monotonic time, waiter) that came up: news a leg may
        # have missed while it was busy failing rather than waiting. Two, so a connection
        # can skip its own recovery in O(1).
        self._last_up: dict[str, list[tuple[float, Waiter]]] = {}

    def add(self, leg: str, segments: Iterable[str]) -> None:
        self._segments[leg] = tuple(segments)

    def remove(self, leg: str) -> None:
        """Forget a leg a reload retired (its tasks have ended, so it waits no more: each
        wait removes its own registration)."""
        self._segments.pop(leg, None)

    async def wait(
        self,
        leg: str,
        kind: Wait,
        seconds: float,
        since: float | None = None,
        connection: int = 0,
    ) -> bool:
        """Sleep up to ``seconds``; True when a neighbour's news cut the sleep short, or
        (for a re-dial) a neighbour came up after ``since``."""
        me = (leg, connection)
        if kind is Wait.REDIAL and since is not None and self._came_up_since(me, since):
            return True
        # A future settled by a timer or by a neighbour's news: every heartbeat of every
        # leg waits here, and a timeout that cancels the wait (asyncio.timeout) cost a
        # cancellation and a swallowed exception each time (docs/benchmarks.md).
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[bool] = loop.create_future()
        self._wake[me] = woken
        timer = loop.call_later(max(0.0, seconds), _settle, woken, False)
        waiting = self._waiting[kind]
        for segment in self._segments[leg]:
            waiting.setdefault(segment, set()).add(me)
        try:
            return await woken
        finally:
            timer.cancel()
            if self._wake.get(me) is woken:
                del self._wake[me]
            for segment in self._segments[leg]:
                waiters = waiting.get(segment)
                if waiters is not None:
                    waiters.discard(me)
                    if not waiters:
                        del waiting[segment]

    def wake(self, changed: str, kind: Wait, connection: int = 0) -> None:
        source = (changed, connection)
        waiting = self._waiting[kind]
        for segment in self._segments.get(changed, ()):
            for waiter in waiting.pop(segment, ()):
                woken = self._wake.get(waiter)
                if waiter != source and woken is not None:
                    _settle(woken, True)

    def _came_up_since(self, me: Waiter, since: float) -> bool:
        for segment in self._segments[me[0]]:
            for at, other in self._last_up.get(segment, ()):
                if other != me and at > since:
                    return True
        return False

    def on_event(self, event: LegEvent) -> None:
        if event.connection is None:
            return  # a whole-leg summary (a burst, a degradation): no connection changed
        source = (event.leg, event.connection)
        if event.kind == "up":
            now = self._clock()
            for segment in self._segments.get(event.leg, ()):
                latest = [
                    (at, waiter)
                    for at, waiter in self._last_up.get(segment, ())
                    if waiter != source
                ]
                self._last_up[segment] = [(now, source), *latest[:1]]
            self.wake(event.leg, Wait.REDIAL, event.connection)
        elif event.kind == "down":
            self.wake(event.leg, Wait.RECHECK, event.connection)


def _settle(woken: asyncio.Future[bool], by_news: bool) -> None:
    if not woken.done():
        woken.set_result(by_news)
