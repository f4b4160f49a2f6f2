"""Per-leg up/down bookkeeping, pure: which reports are transitions worth an event.

Each of a leg's connections reports "up" on every successful heartbeat and "down" on
every failed attempt; only a change (or, while down, a change of failure mode) is
published and counted. The leg is what attribution judges: up while every connection
is up, down (partially, or wholly) while any is down. With one connection, the leg is
its connection.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from t3probe.attribution import LegObservation, LinkState
from t3probe.degradation import DegradationPolicy, RttTracker
from t3probe.reasons import NON_PATH_REASONS, Reason

RECENT_DROPS_PER_LEG = 64


@dataclass(slots=True)
class ConnectionRecord:
    """One connection of a leg: its own state, and the times its evidence carries."""

    state: LinkState = "unknown"
    reason: Reason | None = None
    since: float = 0.0
    last_failure_at: float | None = None
    last_success_at: float | None = None
    # Monotonic time it was last seen failing for a path reason (its drop, or its return
    # from that outage): it counts in the blast radius for the attribution window after,
    # as long as the leg's own hysteresis keeps it convicting.
    last_path_failure_at: float | None = None


@dataclass
class LegRecord:
    name: str
    segments: tuple[str, ...]
    state: LinkState = "unknown"
    reason: Reason | None = None
    since: float = 0.0
    # The latest round trip any of its connections measured.
    last_rtt: float | None = None
    # Monotonic times, the evidence's clock: when it came up (and from which failure),
    # and when its latest attempt failed.
    up_since: float | None = None
    recovered_from: Reason | None = None
    # (monotonic time, reason) of each drop of the leg (its first connection going down
    # while none was): recency is judged on the monotonic clock, so a wall-clock step can
    # neither keep nor clear a conviction, and a burst of connections is one drop.
    recent_drops: collections.deque[tuple[float, Reason]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_DROPS_PER_LEG)
    )
    # Round trips of every connection against the leg's own baseline: up but slow is
    # degraded; and the monotonic time it was last seen so.
    rtts: RttTracker = field(default_factory=lambda: RttTracker(DegradationPolicy()))
    last_slow_at: float | None = None
    connections: list[ConnectionRecord] = field(default_factory=lambda: [ConnectionRecord()])
    # The latest observation, for the windows it was made for and until the first time
    # one of its connections' failures ages out of them: rebuilding ten thousand of them
    # cost 55 ms of loop at every verdict refresh (docs/benchmarks.md). Every change of
    # the record (and the recorder's, through ``invalidate``) drops it.
    _observed: LegObservation | None = field(default=None, repr=False, compare=False)
    _observed_for: tuple[float, float, float] = field(
        default=(0.0, 0.0, 0.0), repr=False, compare=False
    )

    @classmethod
    def with_connections(
        cls, name: str, segments: tuple[str, ...], count: int, since: float, rtts: RttTracker
    ) -> LegRecord:
        return cls(
            name,
            segments,
            since=since,
            rtts=rtts,
            connections=[ConnectionRecord(since=since) for _ in range(count)],
        )

    @property
    def connections_up(self) -> int:
        return sum(1 for c in self.connections if c.state == "up")

    def connection(self, index: int) -> ConnectionRecord | None:
        return self.connections[index] if 0 <= index < len(self.connections) else None

    def mark_up(self, wall: float, monotonic: float, index: int = 0) -> bool:
        """Record an up report of connection ``index``; True when it is a transition."""
        conn = self.connection(index)
        if conn is None or conn.state == "up":
            return False
        self._observed = None
        if conn.state == "down" and conn.reason not in NON_PATH_REASONS:
            conn.last_path_failure_at = monotonic
        conn.state, conn.reason, conn.since = "up", None, wall
        self._settle(wall, monotonic)
        return True

    def mark_down(
        self,
        reason: Reason,
        wall: float,
        monotonic: float,
        attempt_started: float | None = None,
        index: int = 0,
    ) -> bool | None:
        """Record a down report of connection ``index``: None when it repeats the
        connection's current failure, else whether it was up until now. Only a
        transition to down is a drop.

        ``attempt_started`` dates the evidence: an attempt that began before a neighbour
        recovered measured the path as it was then, however late it failed."""
        conn = self.connection(index)
        if conn is None:
            return None
        self._observed = None
        conn.last_failure_at = monotonic if attempt_started is None else attempt_started
        if conn.state == "down" and conn.reason == reason:
            return None
        was_up = conn.state == "up"
        if conn.state != "down":
            # Down since the drop: a reconnect meeting another failure is the same outage.
            conn.since = wall
            if reason not in NON_PATH_REASONS:
                conn.last_path_failure_at = monotonic
        conn.state, conn.reason = "down", reason
        self._settle(wall, monotonic)
        return was_up

    def _settle(self, wall: float, monotonic: float) -> None:
        """Move the leg to what its connections now say."""
        down = [c for c in self.connections if c.state == "down"]
        if down:
            # A path reason says more than a local one; the latest of them, the most.
            path = [c for c in down if c.reason not in NON_PATH_REASONS]
            latest = max(path or down, key=lambda c: c.since)
            if self.state != "down":
                assert latest.reason is not None
                self.recent_drops.append((monotonic, latest.reason))
                self.since = wall
            self.state, self.reason = "down", latest.reason
            self.up_since = self.recovered_from = None
        elif self.state != "up" and all(c.state == "up" for c in self.connections):
            self.recovered_from = self.reason if self.state == "down" else None
            self.state, self.reason, self.since = "up", None, wall
            self.up_since = monotonic
        elif self.state == "down":
            # None is down, and some have not reported yet (start-up): its drop stays in
            # recent_drops, but a reason no connection still has would keep it failing.
            self.state, self.reason, self.since = "unknown", None, wall
        # Otherwise some are up and the rest have not reported yet: still unknown.

    def mark_success(self, rtt: float, monotonic: float, index: int = 0) -> None:
        """An answer arrived at ``monotonic`` after ``rtt``: the path is known to have
        worked since the heartbeat was sent, not since the answer came. A slow echo of a
        heartbeat sent before a neighbour's drop says nothing about the path after it."""
        self.last_rtt = rtt
        self._observed = None
        conn = self.connection(index)
        if conn is not None:
            conn.last_success_at = monotonic - rtt

    def invalidate(self) -> None:
        """Something the observation reads changed outside these methods (its slowness)."""
        self._observed = None

    def failed_connections(self, now: float, window: float) -> int:
        """Connections down for a path reason, or failing for one within ``window``."""
        return sum(1 for c in self.connections if _failed(c, now, window))

    def measured_connections(self, now: float, window: float) -> int:
        """Connections that say something about the path: up, or failed."""
        return sum(1 for c in self.connections if c.state == "up" or _failed(c, now, window))

    def observation(
        self, now: float = 0.0, window: float = 0.0, flap_window: float = 0.0
    ) -> LegObservation:
        until, cached_window, cached_flap = self._observed_for
        if (
            self._observed is not None
            and now < until
            and (cached_window, cached_flap) == (window, flap_window)
        ):
            return self._observed
        observed = self._observe(now, window, flap_window)
        self._observed = observed
        self._observed_for = (self._valid_until(now, window, flap_window), window, flap_window)
        return observed

    def _valid_until(self, now: float, window: float, flap_window: float) -> float:
        """When a connection's failure next ages out of a window (its counts change)."""
        return min(
            (
                _ages_out(at, span)
                for c in self.connections
                if (at := c.last_path_failure_at) is not None
                for span in (window, flap_window)
                # The very test _failed makes: one that no longer counts never will again.
                if now - at <= span
            ),
            default=math.inf,
        )

    def _observe(self, now: float, window: float, flap_window: float) -> LegObservation:
        conns = self.connections
        if len(conns) == 1:
            only = conns[0]
            last_failure_at, last_success_at = only.last_failure_at, only.last_success_at
        else:
            failures = [
                c.last_failure_at
                for c in conns
                if c.last_failure_at is not None and (self.state != "down" or c.state == "down")
            ]
            last_failure_at = max(failures, default=None)
            # The leg vouches for its segments as of its stalest connection's answer.
            successes = [c.last_success_at for c in conns if c.state == "up"]
            known = [at for at in successes if at is not None]
            last_success_at = min(known) if known and len(known) == len(successes) else None
        return LegObservation(
            self.name,
            self.segments,
            self.state,
            self.reason,
            tuple(self.recent_drops),
            up_since=self.up_since,
            recovered_from=self.recovered_from,
            last_failure_at=last_failure_at,
            last_success_at=last_success_at,
            degraded=self.state == "up" and self.rtts.degraded,
            slow_at=self.last_slow_at if self.state == "up" else None,
            connections=len(conns),
            connections_up=self.connections_up,
            failed_connections=self.failed_connections(now, window),
            measured_connections=self.measured_connections(now, max(window, flap_window)),
            flapped_connections=self.failed_connections(now, max(window, flap_window)),
        )


def _failed(conn: ConnectionRecord, now: float, window: float) -> bool:
    return (conn.state == "down" and conn.reason not in NON_PATH_REASONS) or (
        conn.last_path_failure_at is not None and now - conn.last_path_failure_at <= window
    )


def _ages_out(at: float, span: float) -> float:
    """The first time ``t`` at which ``t - at <= span`` (as _failed computes it) is false.

    ``at + span`` is one rounding away from it either way: a cache valid until then would
    keep counting a failure a fresh observation no longer counts, or (rounded down) drop
    it from the expiry while it still counts, and keep counting it for good."""
    end = at + span
    if math.isinf(end):
        return end
    while end - at <= span:
        end = math.nextafter(end, math.inf)
    while (earlier := math.nextafter(end, -math.inf)) - at > span:
        end = earlier
    return end
