"""Drop and recovery events, and the bounded ring buffer that serves ``/events``."""

from __future__ import annotations

import bisect
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from t3probe.reasons import Reason

# "reconnect_failed": a leg already down failed again in another way. It is no new drop
# (counted in t3probe_reconnect_failures_total, not t3probe_disconnects_total).
# "degraded" / "recovered": a leg that stays up became slow (or lossy), and stopped being so.
# "burst": several connections of one leg dropped within burst_window_seconds (each also
# has its own "down"): the probe-side sign of a shared segment breaking.
EventKind = Literal["up", "down", "reconnect_failed", "degraded", "recovered", "burst"]


@dataclass(frozen=True, slots=True)
class LegEvent:
    leg: str
    kind: EventKind
    reason: Reason | None
    at: float
    age_seconds: float | None = None
    last_rtt_seconds: float | None = None
    detail: str = ""
    close_code: int | None = None
    # Which of the leg's connections (0 .. connections-1); None for a whole-leg event.
    connection: int | None = 0
    # A burst: ``dropped`` of the leg's ``of`` connections within ``interval_seconds``.
    dropped: int | None = None
    of: int | None = None
    interval_seconds: float | None = None
    # Given by the EventLog: 1, 2, 3... in the order events happened, within one process.
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "leg": self.leg,
            "kind": self.kind,
            "reason": None if self.reason is None else str(self.reason),
            "at": round(self.at, 3),
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
            "last_rtt_seconds": (
                None if self.last_rtt_seconds is None else round(self.last_rtt_seconds, 6)
            ),
            "detail": self.detail,
            "close_code": self.close_code,
            "connection": self.connection,
            "dropped": self.dropped,
            "of": self.of,
            "interval_seconds": (
                None if self.interval_seconds is None else round(self.interval_seconds, 3)
            ),
        }


class EventLog:
    """Newest-last ring buffer: memory stays bounded however often legs flap.

    Every event gets the next id, so a reader can page by id without losing events that
    share a millisecond (a thousand legs dropping together). Event ``id`` sits at slot
    ``id % capacity``: a page is found by arithmetic (or a bisection for ``since=``) and
    costs the page's length, never a walk over the whole buffer on the event loop.
    """

    def __init__(self, capacity: int) -> None:
        self._slots: list[LegEvent | None] = [None] * capacity
        # Each event's JSON, made once when it is recorded: the stdout line, and what a
        # page of /events is joined from, so serving a page costs no encoding.
        self._lines: list[str] = [""] * capacity
        # Per slot, the latest (rounded) "at" up to that event: sorted even when the wall
        # clock steps back, so since= can bisect and, at worst, returns an event twice.
        self._marks: list[float] = [0.0] * capacity
        self._next_id = 1
        self._oldest_id = 1
        self._latest_at = float("-inf")

    def append(self, event: LegEvent) -> LegEvent:
        """Store ``event`` under the next id; returns it with that id."""
        event = dataclasses.replace(event, id=self._next_id)
        slot = event.id % len(self._slots)
        self._latest_at = max(self._latest_at, round(event.at, 3))
        self._slots[slot] = event
        self._lines[slot] = json.dumps(event.to_json(), separators=(",", ":"))
        self._marks[slot] = self._latest_at
        self._next_id += 1
        self._oldest_id = max(self._oldest_id, self._next_id - len(self._slots))
        return event

    def resize(self, capacity: int) -> None:
        """Keep the newest ``capacity`` events (a reload may change the buffer size)."""
        if capacity == len(self._slots):
            return
        start = max(self._oldest_id, self._next_id - capacity)
        old = len(self._slots)
        kept = [
            (i, self._slots[i % old], self._lines[i % old], self._marks[i % old])
            for i in range(start, self._next_id)
        ]
        self._slots = [None] * capacity
        self._lines = [""] * capacity
        self._marks = [0.0] * capacity
        for event_id, event, line, mark in kept:
            self._slots[event_id % capacity] = event
            self._lines[event_id % capacity] = line
            self._marks[event_id % capacity] = mark
        self._oldest_id = start

    def since(self, since: float | None = None) -> list[LegEvent]:
        """Every buffered event, or those after the (millisecond-rounded) time ``since``."""
        if since is None:
            return self._range(self._oldest_id, self._next_id)
        return self._range(self._first_after(since), self._next_id)

    def after(self, after_id: int, limit: int) -> tuple[list[LegEvent], bool]:
        """The oldest ``limit`` events with an id above ``after_id``, and whether more follow."""
        start = max(after_id + 1, self._oldest_id)
        stop = min(start + limit, self._next_id)
        return self._range(start, stop), stop < self._next_id

    def after_time(self, since: float, limit: int) -> tuple[list[LegEvent], bool]:
        """Like :meth:`after`, from the first event after the time ``since``."""
        return self.after(self._first_after(since) - 1, limit)

    def newest(self, limit: int) -> list[LegEvent]:
        return self._range(max(self._oldest_id, self._next_id - limit), self._next_id)

    def line_of(self, event: LegEvent) -> str:
        """The JSON of a buffered event (as recorded, one line)."""
        slot = event.id % len(self._slots)
        if self._slots[slot] is not event:
            return json.dumps(event.to_json(), separators=(",", ":"))  # no longer buffered
        return self._lines[slot]

    def page_body(self, events: list[LegEvent], more: bool) -> bytes:
        """The ``/events`` answer for a page just taken from this buffer."""
        joined = ",".join(self.line_of(event) for event in events)
        return f'{{"events":[{joined}],"more":{"true" if more else "false"}}}'.encode()

    def _first_after(self, since: float) -> int:
        # Clients echo back the millisecond-rounded "at" they were given.
        ids = range(self._oldest_id, self._next_id)
        return self._oldest_id + bisect.bisect_right(ids, since, key=self._mark)

    def _mark(self, event_id: int) -> float:
        return self._marks[event_id % len(self._marks)]

    def _range(self, start: int, stop: int) -> list[LegEvent]:
        capacity = len(self._slots)
        return [
            event for i in range(start, stop) if (event := self._slots[i % capacity]) is not None
        ]

    def __len__(self) -> int:
        return self._next_id - self._oldest_id
