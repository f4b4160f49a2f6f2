"""Drop and recovery events, and the bounded ring buffer that serves ``/events``."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Literal

from t3probe.reasons import Reason

# "reconnect_failed": a leg already down failed again in another way. It is no new drop
# (counted in t3probe_reconnect_failures_total, not t3probe_disconnects_total).
# "degraded" / "recovered": a leg that stays up became slow (or lossy), and stopped being so.
EventKind = Literal["up", "down", "reconnect_failed", "degraded", "recovered"]


@dataclass(frozen=True)
class LegEvent:
    leg: str
    kind: EventKind
    reason: Reason | None
    at: float
    age_seconds: float | None = None
    last_rtt_seconds: float | None = None
    detail: str = ""
    close_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
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
        }


class EventLog:
    """Newest-last ring buffer: memory stays bounded however often legs flap."""

    def __init__(self, capacity: int) -> None:
        self._events: collections.deque[LegEvent] = collections.deque(maxlen=capacity)

    def append(self, event: LegEvent) -> None:
        self._events.append(event)

    def resize(self, capacity: int) -> None:
        """Keep the newest ``capacity`` events (a reload may change the buffer size)."""
        if capacity != self._events.maxlen:
            self._events = collections.deque(self._events, maxlen=capacity)

    def since(self, since: float | None = None) -> list[LegEvent]:
        if since is None:
            return list(self._events)
        # Clients echo back the millisecond-rounded "at" they were given.
        return [event for event in self._events if round(event.at, 3) > since]

    def __len__(self) -> int:
        return len(self._events)
