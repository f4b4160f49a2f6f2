"""Per-leg up/down bookkeeping, pure: which reports are transitions worth an event.

Legs report "up" on every successful heartbeat and "down" on every failed attempt; only
a change (or, while down, a change of failure mode) is published and counted.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from t3probe.attribution import LegObservation, LinkState
from t3probe.degradation import DegradationPolicy, RttTracker
from t3probe.reasons import Reason

RECENT_DROPS_PER_LEG = 64


@dataclass
class LegRecord:
    name: str
    segments: tuple[str, ...]
    state: LinkState = "unknown"
    reason: Reason | None = None
    since: float = 0.0
    last_rtt: float | None = None
    # Monotonic times, the evidence's clock: when it came up (and from which failure),
    # and when its latest attempt failed.
    up_since: float | None = None
    recovered_from: Reason | None = None
    last_failure_at: float | None = None
    last_success_at: float | None = None
    # (monotonic time, reason) of each drop: recency is judged on the monotonic clock,
    # so a wall-clock step can neither keep nor clear a conviction.
    recent_drops: collections.deque[tuple[float, Reason]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_DROPS_PER_LEG)
    )
    # Round trips against the leg's own baseline: up but slow is degraded; and the
    # monotonic time it was last seen so.
    rtts: RttTracker = field(default_factory=lambda: RttTracker(DegradationPolicy()))
    last_slow_at: float | None = None

    def mark_up(self, wall: float, monotonic: float) -> bool:
        """Record an up report; True when it is a transition."""
        if self.state == "up":
            return False
        self.recovered_from = self.reason if self.state == "down" else None
        self.state, self.reason, self.since = "up", None, wall
        self.up_since = monotonic
        return True

    def mark_down(
        self, reason: Reason, wall: float, monotonic: float, attempt_started: float | None = None
    ) -> bool | None:
        """Record a down report: None when it repeats the current failure, else whether
        the leg was up until now. Only a transition to down is a drop.

        ``attempt_started`` dates the evidence: an attempt that began before a neighbour
        recovered measured the path as it was then, however late it failed."""
        self.last_failure_at = monotonic if attempt_started is None else attempt_started
        if self.state == "down" and self.reason == reason:
            return None
        was_up = self.state == "up"
        if self.state != "down":
            self.recent_drops.append((monotonic, reason))
            # Down since the drop: a reconnect meeting another failure is the same outage.
            self.since = wall
        self.state, self.reason = "down", reason
        self.up_since = self.recovered_from = None
        return was_up

    def mark_success(self, rtt: float, monotonic: float) -> None:
        """An answer arrived at ``monotonic`` after ``rtt``: the path is known to have
        worked since the heartbeat was sent, not since the answer came. A slow echo of a
        heartbeat sent before a neighbour's drop says nothing about the path after it."""
        self.last_rtt = rtt
        self.last_success_at = monotonic - rtt

    def observation(self) -> LegObservation:
        return LegObservation(
            self.name,
            self.segments,
            self.state,
            self.reason,
            tuple(self.recent_drops),
            up_since=self.up_since,
            recovered_from=self.recovered_from,
            last_failure_at=self.last_failure_at,
            last_success_at=self.last_success_at,
            degraded=self.state == "up" and self.rtts.degraded,
            slow_at=self.last_slow_at if self.state == "up" else None,
        )
