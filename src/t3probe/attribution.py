"""Which segment is at fault: boolean network tomography over the legs' routes.

Pure: the caller supplies every leg's observed state and recent drops, and the time.

A leg is *failing* when it is down for a path reason or dropped for one within the
attribution window; *healthy* when it is up with no such drop. A segment is suspect when
it lies on failing legs and on no healthy leg. With several independent faults the
suspects are a small set of segments explaining every failing leg, found by greedy set
cover (not guaranteed minimal, but exact for the small, tree-like topologies of probes).
At each greedy step *every* segment tied for the best coverage is reported: segments a
probe cannot tell apart (``wan``/``cf_edge``/``cf_tunnel`` on one leg) stay visible
instead of one being picked arbitrarily.

Reasons that say nothing about the path (``dns_failed``, ``route_mismatch``,
``internal_error``) make a leg *unmeasured*: it neither convicts nor exonerates. A drop
caused by the probe's own stall makes the whole verdict ``probe_unhealthy``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from t3probe.reasons import NON_PATH_REASONS, Reason

LinkState = Literal["unknown", "up", "down"]


class VerdictName(enum.StrEnum):
    INFRA_CLEAN = "infra_clean"
    SUSPECT = "suspect"
    PROBE_UNHEALTHY = "probe_unhealthy"
    UNKNOWN = "unknown"


class LegStatus(enum.StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    FAILING = "failing"
    UNMEASURED = "unmeasured"
    STALLED = "stalled"


@dataclass(frozen=True)
class LegObservation:
    name: str
    segments: tuple[str, ...]
    state: LinkState
    reason: Reason | None = None
    recent_drops: tuple[tuple[float, Reason], ...] = ()


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictName
    suspects: tuple[str, ...] = ()
    leg_status: dict[str, LegStatus] = field(default_factory=dict)
    unobserved: tuple[str, ...] = ()
    unexplained: tuple[str, ...] = ()


def leg_status(leg: LegObservation, now: float, window: float) -> LegStatus:
    recent = [reason for at, reason in leg.recent_drops if now - at <= window]
    if Reason.PROBE_STALL in recent or (leg.state == "down" and leg.reason == Reason.PROBE_STALL):
        return LegStatus.STALLED
    if leg.state == "down" and leg.reason is not None and leg.reason not in NON_PATH_REASONS:
        return LegStatus.FAILING
    if any(reason not in NON_PATH_REASONS for reason in recent):
        return LegStatus.FAILING
    if leg.state == "down":
        return LegStatus.UNMEASURED
    if leg.state == "unknown":
        return LegStatus.UNKNOWN
    return LegStatus.HEALTHY


def _ordered(segments: Iterable[str], order: Sequence[str]) -> tuple[str, ...]:
    wanted = set(segments)
    return tuple(segment for segment in order if segment in wanted)


def _cover(failing: Sequence[LegObservation], candidates: set[str]) -> tuple[set[str], set[str]]:
    """Greedy set cover of failing legs by candidate segments, keeping ties."""
    uncovered = {leg.name for leg in failing}
    covers = {
        segment: {leg.name for leg in failing if segment in leg.segments} for segment in candidates
    }
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


def compute_verdict(legs: Sequence[LegObservation], now: float, window: float) -> Verdict:
    order = list(dict.fromkeys(segment for leg in legs for segment in leg.segments))
    statuses = {leg.name: leg_status(leg, now, window) for leg in legs}
    by_status = {
        status: [leg for leg in legs if statuses[leg.name] is status] for status in LegStatus
    }
    healthy_segments = {s for leg in by_status[LegStatus.HEALTHY] for s in leg.segments}
    unobserved = _ordered(
        {s for leg in legs for s in leg.segments}
        - healthy_segments
        - {s for leg in by_status[LegStatus.FAILING] for s in leg.segments},
        order,
    )
    if by_status[LegStatus.STALLED]:
        return Verdict(VerdictName.PROBE_UNHEALTHY, leg_status=statuses, unobserved=unobserved)
    failing = by_status[LegStatus.FAILING]
    if failing:
        candidates = {s for leg in failing for s in leg.segments} - healthy_segments
        chosen, unexplained = _cover(failing, candidates)
        return Verdict(
            VerdictName.SUSPECT,
            suspects=_ordered(chosen, order),
            leg_status=statuses,
            unobserved=unobserved,
            unexplained=tuple(sorted(unexplained)),
        )
    if by_status[LegStatus.UNKNOWN] or by_status[LegStatus.UNMEASURED]:
        return Verdict(VerdictName.UNKNOWN, leg_status=statuses, unobserved=unobserved)
    return Verdict(VerdictName.INFRA_CLEAN, leg_status=statuses)
