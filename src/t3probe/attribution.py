"""Which segment is at fault: boolean network tomography over the legs' routes.

Pure: the caller supplies every leg's observed state, recent drops and times, and now.
All times are on one monotonic clock.

Evidence has a time. A leg is *failing* while it is down for a path reason, and for
``window`` seconds after it was last seen failing: after a drop it saw, or after it came
back up from an outage (so a leg that has just come back holds for the window before it
clears a segment another leg is failing on: hysteresis). A leg is *flapping* when it
dropped ``flap_drops`` times within ``flap_window``: it convicts like a failing leg even
while momentarily up. A leg is *healthy* when it is up with none of that; a healthy leg
clears its segments only with evidence at least as new as the failure it contradicts.
When the two disagree in time, the failing leg is *rechecking* and neither convicts nor
exonerates until the older side has been checked again (the daemon does that at once):
a leg still down whose last failed attempt predates a neighbour's recovery (the end of a
fault), or a fresh drop that a neighbour has not answered a heartbeat since (the onset
of a fault, while the neighbour's own watchdog has not yet run out).

A segment is suspect when it lies on failing legs and on no healthy leg. With several
independent faults the suspects are a small set of segments explaining every failing
leg, found by greedy set cover (not guaranteed minimal, but exact for the small,
tree-like topologies of probes). At each greedy step *every* segment tied for the best
coverage is reported: segments a probe cannot tell apart (``wan``/``cf_edge``/
``cf_tunnel`` on one leg) stay visible instead of one being picked arbitrarily. Failing
legs that no segment explains (each of their segments is cleared by a healthy leg) make
the verdict ``inconclusive``, never ``suspect`` with nobody suspected.

Reasons that say nothing about the path (``dns_failed``, ``route_mismatch``,
``internal_error``, ``probe_network``) make a leg *unmeasured*: it neither convicts nor
exonerates. A drop caused by the probe's own stall (until that leg has answered again),
or every leg down with the probe's own network among the reasons and no path reason,
makes the whole verdict ``probe_unhealthy``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from t3probe.reasons import NON_PATH_REASONS, Reason

LinkState = Literal["unknown", "up", "down"]
DEFAULT_FLAP_DROPS = 2


class VerdictName(enum.StrEnum):
    INFRA_CLEAN = "infra_clean"
    SUSPECT = "suspect"
    DEGRADED = "degraded"
    INCONCLUSIVE = "inconclusive"
    PROBE_UNHEALTHY = "probe_unhealthy"
    UNKNOWN = "unknown"


class LegStatus(enum.StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    FLAPPING = "flapping"
    RECHECKING = "rechecking"
    UNMEASURED = "unmeasured"
    STALLED = "stalled"


CONVICTING = frozenset({LegStatus.FAILING, LegStatus.FLAPPING})


@dataclass(frozen=True)
class Policy:
    """How long evidence counts."""

    window: float
    # 0 turns flap memory off beyond the window.
    flap_window: float = 0.0
    flap_drops: int = DEFAULT_FLAP_DROPS

    def __post_init__(self) -> None:
        # Fewer than one drop would make every leg that is up "flapping" (and leg_status's
        # fast path would disagree); the config already asks for at least 2.
        if self.flap_drops < 1:
            raise ValueError(f"flap_drops must be at least 1, got {self.flap_drops}")


@dataclass(frozen=True)
class LegObservation:
    name: str
    segments: tuple[str, ...]
    state: LinkState
    reason: Reason | None = None
    # (time, reason) of each drop: a transition to down.
    recent_drops: tuple[tuple[float, Reason], ...] = ()
    # While up: since when, and the reason it was down for until then (None: never was).
    up_since: float | None = None
    recovered_from: Reason | None = None
    # While down: when its latest attempt failed.
    last_failure_at: float | None = None
    # While up: when the heartbeat (an echo, a GET) of its latest answer was sent.
    last_success_at: float | None = None
    # While up: slow against its own baseline, or losing heartbeats (t3probe.degradation),
    # and when it was last seen so: slowness counts for the window after, like a drop.
    degraded: bool = False
    slow_at: float | None = None
    # A leg of several connections (``connections: N``) is down while any of them is:
    # ``connections_up`` of them still work (None: all, when up; none, when down), and
    # ``failed_connections`` are down for a path reason or were failing for one (dropped,
    # or back from it) within the window (None: all of them while the leg is failing,
    # else none).
    connections: int = 1
    connections_up: int | None = None
    failed_connections: int | None = None
    # Of them, those whose state says something about the path: up, or failed as above
    # (None: all). One down for a local reason, or not yet reported, never crossed it.
    measured_connections: int | None = None
    # Failed as above within the flap window: what a flapping leg convicts on (None: as
    # ``failed_connections``).
    flapped_connections: int | None = None

    @property
    def partial(self) -> bool:
        """Down, but some of its connections still work: the probe has a network."""
        return self.state == "down" and bool(self.connections_up)


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictName
    suspects: tuple[str, ...] = ()
    leg_status: dict[str, LegStatus] = field(default_factory=dict)
    unobserved: tuple[str, ...] = ()
    unexplained: tuple[str, ...] = ()
    # Segments found slow: on degraded legs and on no healthy (fast) leg.
    degraded: tuple[str, ...] = ()
    # Per suspect segment, the share of the connections crossing it that failed.
    blast_radius: dict[str, float] = field(default_factory=dict)


def _is_path(reason: Reason | None) -> bool:
    return reason is not None and reason not in NON_PATH_REASONS


def leg_status(leg: LegObservation, now: float, policy: Policy) -> LegStatus:
    """The leg's own status, before rechecking (which depends on the other legs)."""
    if (
        leg.state == "up"
        and not leg.recent_drops
        and leg.recovered_from is None
        and not leg.degraded
        and leg.slow_at is None
    ):
        return LegStatus.HEALTHY  # nearly every leg, nearly always: nothing to weigh
    recent = [reason for at, reason in leg.recent_drops if now - at <= policy.window]
    if _stalled(leg, now, policy):
        return LegStatus.STALLED
    if leg.state == "down" and _is_path(leg.reason):
        return LegStatus.FAILING
    if any(_is_path(reason) for reason in recent):
        return LegStatus.FAILING
    if (
        leg.state == "up"
        and _is_path(leg.recovered_from)
        and leg.up_since is not None
        and now - leg.up_since <= policy.window
    ):
        return LegStatus.FAILING
    if policy.flap_window > 0:
        flaps = [
            at
            for at, reason in leg.recent_drops
            if now - at <= policy.flap_window and _is_path(reason)
        ]
        if len(flaps) >= policy.flap_drops and leg.state != "unknown":
            return LegStatus.FLAPPING
    if leg.state == "down":
        return LegStatus.UNMEASURED
    if leg.state == "unknown":
        return LegStatus.UNKNOWN
    # Intermittent slowness (loss that costs some echoes a retransmission) moves from leg
    # to leg: a leg slow a moment ago is no fast alibi for a neighbour slow now.
    recently_slow = leg.slow_at is not None and now - leg.slow_at <= policy.window
    return LegStatus.DEGRADED if leg.degraded or recently_slow else LegStatus.HEALTHY


def _stalled(leg: LegObservation, now: float, policy: Policy) -> bool:
    """The probe's own stall explains this leg's state, until the leg has answered since.

    Once echoes flow again the stall is over: blaming it for the rest of the window
    would hide (as ``probe_unhealthy``) a real fault that follows it.
    """
    if leg.state == "down":
        return leg.reason is Reason.PROBE_STALL
    stalls = [at for at, reason in leg.recent_drops if reason is Reason.PROBE_STALL]
    if not stalls or now - stalls[-1] > policy.window:
        return False
    fresh = _freshness(leg)
    return fresh is None or fresh <= stalls[-1]


def _freshness(leg: LegObservation) -> float | None:
    """The time of a healthy leg's newest evidence (None: times unknown, take it as new)."""
    times = [at for at in (leg.up_since, leg.last_success_at) if at is not None]
    return max(times) if times else None


def _disagree_in_time(failing: LegObservation, healthy: LegObservation) -> bool:
    failed_at = failing.last_failure_at if failing.state == "down" else None
    # The end of a fault: the failed attempt began while the neighbour was still failing
    # (it recovered from a path failure since), so the shared segment may explain it. A
    # neighbour that merely came up (at start-up) was never failing: no disagreement.
    up_since = healthy.up_since if _is_path(healthy.recovered_from) else None
    if failed_at is not None and up_since is not None and up_since > failed_at:
        return True
    fresh = _freshness(healthy)
    if fresh is None or not failing.recent_drops:
        return False
    # The onset of a fault: the neighbour has not answered since this leg dropped.
    return fresh < failing.recent_drops[-1][0]


def _recheck(
    legs: Sequence[LegObservation], statuses: dict[str, LegStatus]
) -> dict[str, LegStatus]:
    """Failing legs whose evidence a healthy neighbour contradicts only with older (or
    newer-but-unconfirmed) evidence of its own are rechecking."""
    healthy = [leg for leg in legs if statuses[leg.name] is LegStatus.HEALTHY]
    result = dict(statuses)
    for leg in legs:
        if statuses[leg.name] is not LegStatus.FAILING:
            continue
        shared = set(leg.segments)
        for other in healthy:
            if shared.intersection(other.segments) and _disagree_in_time(leg, other):
                result[leg.name] = LegStatus.RECHECKING
                break
    return result


def _ordered(segments: Iterable[str], order: Sequence[str]) -> tuple[str, ...]:
    wanted = set(segments)
    return tuple(segment for segment in order if segment in wanted)


def _clean_since(leg: LegObservation) -> float:
    """Since when a healthy leg has worked without a break (-inf: it never broke)."""
    times = [at for at, _ in leg.recent_drops[-1:]]
    if leg.recovered_from is not None and leg.up_since is not None:
        times.append(leg.up_since)
    return max(times, default=-math.inf)


def _failure_span(
    leg: LegObservation, status: LegStatus, now: float, policy: Policy
) -> tuple[float, float]:
    """When a leg's evidence of failure was gathered: from the start of the attempt that
    failed (the last answer before a drop, a failed connect's start) to its return (now
    while down). A flapping leg's evidence is its drops over the flap window: only a leg
    that worked through all of it contradicts them (flap memories fade at different
    times when an intermittent fault ends). Backoff is no evidence either way."""
    end = now if leg.state == "down" else (leg.up_since if leg.up_since is not None else now)
    if status is LegStatus.FLAPPING:
        flaps = [
            at
            for at, reason in leg.recent_drops
            if now - at <= policy.flap_window and _is_path(reason)
        ]
        return min(flaps, default=now), end
    # Its latest failed attempt: a leg down for long keeps gathering fresh evidence.
    start = leg.last_failure_at
    if start is None:
        drops = [at for at, reason in leg.recent_drops if _is_path(reason)]
        start = drops[-1] if drops else now
    return start, max(start, end)


def _witnesses(
    spans: dict[str, tuple[float, float]], healthy: Sequence[LegObservation]
) -> list[LegObservation]:
    """Healthy legs that were themselves down for a path reason while a convicting leg's
    evidence was gathered: the same fault seen earlier. Their outage explains the shared
    segments (a dispatch restart or an LB fault healing: ``internal`` back first and
    holding, ``cloudflare`` back later) instead of leaving only those they do not share."""
    witnesses = []
    for leg in healthy:
        if not leg.recent_drops or not _is_path(leg.recent_drops[-1][1]):
            continue
        starts = [leg.recent_drops[-1][0]]
        if leg.last_failure_at is not None:
            starts.append(leg.last_failure_at)
        broke, back = min(starts), _clean_since(leg)
        if any(broke <= end and start < back for start, end in spans.values()):
            witnesses.append(leg)
    return witnesses


def _candidates(
    failing: Sequence[LegObservation],
    healthy: Sequence[LegObservation],
    statuses: dict[str, LegStatus],
    now: float,
    policy: Policy,
) -> dict[str, set[str]]:
    """The segments that may explain each convicting leg (and each witness of the same
    fault): those no healthy leg contradicts. A healthy leg clears a segment only if it
    was already working when the failure began to be seen."""
    spans = {leg.name: _failure_span(leg, statuses[leg.name], now, policy) for leg in failing}
    witnesses = _witnesses(spans, healthy)
    for leg in witnesses:
        spans[leg.name] = _failure_span(leg, LegStatus.FAILING, now, policy)
    # Most healthy legs never broke: they clear their segments for every failure, so
    # their union is made once, not once per failing leg (a thousand legs dropping
    # together meet a thousand healthy ones).
    always_clear: set[str] = set()
    since_broke: list[tuple[float, LegObservation]] = []
    for other in healthy:
        clean = _clean_since(other)
        if clean == -math.inf:
            always_clear.update(other.segments)
        else:
            since_broke.append((clean, other))
    result = {}
    for leg in [*failing, *witnesses]:
        cleared = always_clear | {
            segment
            for clean, other in since_broke
            if other is not leg and clean <= spans[leg.name][0]
            for segment in other.segments
        }
        result[leg.name] = set(leg.segments) - cleared
    return result


def _cover(candidates: dict[str, set[str]]) -> tuple[set[str], set[str]]:
    """Greedy set cover of legs by their candidate segments, keeping ties."""
    uncovered = set(candidates)
    covers: dict[str, set[str]] = {}
    for name, segments in candidates.items():
        for segment in segments:
            covers.setdefault(segment, set()).add(name)
    chosen: set[str] = set()
    while uncovered:
        gains = {segment: len(legs & uncovered) for segment, legs in covers.items()}
        best = max(gains.values(), default=0)
        if best == 0:
            break
        tied = {segment for segment, gain in gains.items() if gain == best}
        chosen |= tied
        for segment in tied:
            uncovered -= covers[segment]
    return chosen, uncovered


def _probe_offline(legs: Sequence[LegObservation]) -> bool:
    """Every leg is down, none for a path reason, and some on the probe's own network:
    the probe, not the path. With no route at all, legs that resolve names first fail
    as ``dns_failed`` (their resolver is unreachable too) beside ``probe_network`` ones."""
    return (
        bool(legs)
        and all(
            leg.state == "down" and not _is_path(leg.reason) and not leg.partial for leg in legs
        )
        and any(leg.reason is Reason.PROBE_NETWORK for leg in legs)
    )


def compute_verdict(legs: Sequence[LegObservation], now: float, policy: Policy | float) -> Verdict:
    if not isinstance(policy, Policy):
        policy = Policy(window=policy)
    order = list(dict.fromkeys(segment for leg in legs for segment in leg.segments))
    statuses = _recheck(legs, {leg.name: leg_status(leg, now, policy) for leg in legs})
    by_status: dict[LegStatus, list[LegObservation]] = {status: [] for status in LegStatus}
    for leg in legs:
        by_status[statuses[leg.name]].append(leg)
    failing = [leg for leg in legs if statuses[leg.name] in CONVICTING]
    up = by_status[LegStatus.HEALTHY] + by_status[LegStatus.DEGRADED]
    healthy_segments = {s for leg in up for s in leg.segments}
    unobserved = _ordered(
        {s for leg in legs for s in leg.segments}
        - healthy_segments
        - {s for leg in failing for s in leg.segments},
        order,
    )
    if by_status[LegStatus.STALLED] or _probe_offline(legs):
        return Verdict(VerdictName.PROBE_UNHEALTHY, leg_status=statuses, unobserved=unobserved)
    slow, slow_unexplained = _degradation(by_status)
    degraded = _ordered(slow, order)
    if failing:
        candidates = _candidates(failing, by_status[LegStatus.HEALTHY], statuses, now, policy)
        chosen, uncovered = _cover(candidates)
        unexplained = uncovered & {leg.name for leg in failing}
        suspects = _ordered(chosen, order)
        return Verdict(
            VerdictName.SUSPECT if chosen else VerdictName.INCONCLUSIVE,
            suspects=suspects,
            leg_status=statuses,
            unobserved=unobserved,
            unexplained=tuple(sorted(unexplained)),
            degraded=degraded,
            blast_radius=blast_radius(suspects, legs, statuses),
        )
    if by_status[LegStatus.DEGRADED]:
        return Verdict(
            VerdictName.DEGRADED if slow else VerdictName.INCONCLUSIVE,
            suspects=degraded,
            leg_status=statuses,
            unobserved=unobserved,
            unexplained=tuple(sorted(slow_unexplained)),
            degraded=degraded,
        )
    if (
        by_status[LegStatus.UNKNOWN]
        or by_status[LegStatus.UNMEASURED]
        or by_status[LegStatus.RECHECKING]
    ):
        return Verdict(VerdictName.UNKNOWN, leg_status=statuses, unobserved=unobserved)
    return Verdict(VerdictName.INFRA_CLEAN, leg_status=statuses)


def blast_radius(
    segments: Sequence[str], legs: Sequence[LegObservation], statuses: dict[str, LegStatus]
) -> dict[str, float]:
    """Per segment, the share of the connections of every leg crossing it that failed.

    Half the LB's backends dying shows as 0.5 on the LB's segments; a leg wholly down
    counts all its connections. Connections that never crossed the segment (down for a
    local reason, not yet reported) are not in the share. A leg with no failure count of
    its own counts as failed whole while it convicts (failing or flapping), else not at
    all.
    """
    wanted = set(segments)
    failed = dict.fromkeys(wanted, 0)
    total = dict.fromkeys(wanted, 0)
    for leg in legs:
        crossed = wanted.intersection(leg.segments)
        if not crossed:
            continue
        status = statuses.get(leg.name)
        if status is LegStatus.FLAPPING and leg.flapped_connections is not None:
            broken = min(leg.flapped_connections, leg.connections)
        elif leg.failed_connections is not None:
            broken = min(leg.failed_connections, leg.connections)
        else:
            broken = leg.connections if status in CONVICTING else 0
        crossing = leg.connections if leg.measured_connections is None else leg.measured_connections
        for segment in crossed:
            failed[segment] += broken
            total[segment] += max(crossing, broken)
    return {
        segment: round(failed[segment] / total[segment], 3)
        for segment in dict.fromkeys(segments)
        if total[segment]
    }


def _degradation(
    by_status: dict[LegStatus, list[LegObservation]],
) -> tuple[set[str], set[str]]:
    """The same tomography for slowness: segments on degraded legs and on no healthy
    (fast) leg, and the degraded legs none of them explains. A degraded leg is up: it
    neither convicts a segment of failing nor clears one for a failing leg."""
    fast = {segment for leg in by_status[LegStatus.HEALTHY] for segment in leg.segments}
    candidates = {leg.name: set(leg.segments) - fast for leg in by_status[LegStatus.DEGRADED]}
    return _cover(candidates)
