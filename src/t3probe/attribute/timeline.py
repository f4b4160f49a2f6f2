"""The verdict over time: the live attribution engine replayed over each leg's history. Pure.

Every leg's history (its ups and downs with their reasons, and the spans no data vouches
for) is turned into the :class:`LegObservation` the probe would have had at each moment,
and :func:`compute_verdict` — the probe's own engine, same policy — judges it. The verdict
only changes at a leg's change, when evidence ages out of the attribution or flap window,
or where data begins or ends, so it is evaluated at exactly those moments.

Runs of fault verdicts become incidents. Two faults close together stay apart: an
incident ends where the verdict turns clean (or to no data), and a new one begins where
the suspects change to segments disjoint from the previous ones (a CDN fault, then an
LB fault while the CDN leg's evidence still holds). A verdict that lasted less than
:data:`SETTLE_SECONDS` is the engine between two observations (a neighbour not yet
rechecked), which the live probe resolves at once: it joins what follows.

Before a leg's first data, and inside its gaps, the leg is "unknown": no data is never
evidence, for or against.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from t3probe.attribution import (
    CONVICTING,
    LegObservation,
    LegStatus,
    Policy,
    Verdict,
    VerdictName,
    compute_verdict,
)
from t3probe.legstate import RECENT_DROPS_PER_LEG
from t3probe.reasons import Reason

# Past the boundary of "now - at <= window": evidence has aged out.
_EPSILON = 1e-3
# The live probe rechecks a leg whose neighbour disagrees at once (within a heartbeat
# answer); a replayed verdict shorter than this is that transient, not an incident.
SETTLE_SECONDS = 5.0
FAULT_VERDICTS = frozenset(
    {VerdictName.SUSPECT, VerdictName.INCONCLUSIVE, VerdictName.PROBE_UNHEALTHY}
)
# Bounds the work for a day-long window of a flapping leg.
MAX_STEPS = 20_000


@dataclass(frozen=True)
class Change:
    at: float
    up: bool
    # Why it went down (None: up, or a reason the source does not tell).
    reason: Reason | None = None


@dataclass(frozen=True)
class LegHistory:
    name: str
    segments: tuple[str, ...]
    # Since when data vouches for the leg (None: never in the range).
    first_data: float | None
    # The state at first_data: True up, False down, None unknown.
    initial_up: bool | None
    initial_reason: Reason | None = None
    changes: tuple[Change, ...] = ()
    # Spans after first_data that no data vouches for (not scraped).
    gaps: tuple[tuple[float, float], ...] = ()
    # Where data ends (None: the end of the range).
    last_data: float | None = None

    def observed_at(self, at: float) -> bool:
        if self.first_data is None or at < self.first_data:
            return False
        if self.last_data is not None and at > self.last_data:
            return False
        return not any(start <= at < end for start, end in self.gaps)

    @functools.cached_property
    def _states(self) -> tuple[tuple[bool | None, Reason | None, float | None, Reason | None], ...]:
        """(up, reason, up_since, recovered_from) after each prefix of the changes."""
        up, reason = self.initial_up, self.initial_reason
        up_since: float | None = None
        recovered_from: Reason | None = None
        states = [(up, reason, up_since, recovered_from)]
        for change in self.changes:
            if change.up and up is False:
                up_since, recovered_from = change.at, reason
            elif not change.up:
                up_since = recovered_from = None
            up = change.up
            reason = None if change.up else change.reason
            states.append((up, reason, up_since, recovered_from))
        return tuple(states)

    @functools.cached_property
    def _drops(self) -> tuple[tuple[float, Reason], ...]:
        return tuple((c.at, c.reason) for c in self.changes if not c.up and c.reason is not None)

    def observation(self, at: float) -> LegObservation:
        # As the live probe, only the latest drops are remembered (bounded per leg).
        shown = bisect.bisect_right(self._drops, at, key=lambda drop: drop[0])
        drops = self._drops[max(0, shown - RECENT_DROPS_PER_LEG) : shown]
        if not self.observed_at(at):
            return LegObservation(self.name, self.segments, "unknown", recent_drops=drops)
        applied = bisect.bisect_right(self.changes, at, key=lambda change: change.at)
        up, reason, up_since, recovered_from = self._states[applied]
        if up is None:
            return LegObservation(self.name, self.segments, "unknown", recent_drops=drops)
        if up:
            # Looking back, an up leg answered its heartbeats right up to this moment.
            return LegObservation(
                self.name,
                self.segments,
                "up",
                recent_drops=drops,
                up_since=up_since,
                recovered_from=recovered_from,
                last_success_at=at,
            )
        return LegObservation(self.name, self.segments, "down", reason, recent_drops=drops)


@dataclass(frozen=True)
class Step:
    start: float
    end: float
    verdict: Verdict
    observed: bool  # some leg had data


@dataclass(frozen=True)
class LegRole:
    """A leg behind an incident: how the engine saw it, and the reasons it dropped for."""

    name: str
    status: LegStatus
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Incident:
    start: float
    end: float
    verdict: VerdictName
    suspects: tuple[str, ...]
    legs: tuple[LegRole, ...]
    # The incident runs on past the end of the range.
    ongoing: bool = False

    def distance(self, at: float) -> float:
        """Seconds from ``at`` to the incident: 0 inside, negative before it."""
        if at < self.start:
            return at - self.start
        if at > self.end:
            return at - self.end
        return 0.0


@dataclass(frozen=True)
class Replay:
    steps: tuple[Step, ...]
    incidents: tuple[Incident, ...]
    # When the first leg had data (None: none in the range).
    first_data: float | None


def replay(histories: Sequence[LegHistory], start: float, end: float, policy: Policy) -> Replay:
    points = _points(histories, start, end, policy)
    steps = []
    for at, until in zip(points, [*points[1:], end], strict=True):
        observations = [history.observation(at) for history in histories]
        observed = any(history.observed_at(at) for history in histories)
        steps.append(Step(at, until, compute_verdict(observations, at, policy), observed))
    firsts = [h.first_data for h in histories if h.first_data is not None]
    settled = _settle(steps)
    return Replay(
        tuple(settled),
        _incidents(settled, histories, end),
        max(start, min(firsts)) if firsts else None,
    )


def _points(
    histories: Sequence[LegHistory], start: float, end: float, policy: Policy
) -> list[float]:
    moments = {start}
    for history in histories:
        edges = [history.first_data, history.last_data]
        edges += [edge for gap in history.gaps for edge in gap]
        moments.update(edge for edge in edges if edge is not None)
        for change in history.changes:
            moments.add(change.at)
            if policy.window > 0:
                moments.add(change.at + policy.window + _EPSILON)
            if policy.flap_window > 0:
                moments.add(change.at + policy.flap_window + _EPSILON)
        if history.last_data is not None:
            moments.add(history.last_data + _EPSILON)
    inside = sorted(moment for moment in moments if start <= moment < end)
    return inside[:MAX_STEPS]


def _is_fault(step: Step) -> bool:
    return step.verdict.verdict in FAULT_VERDICTS


def _settle(steps: list[Step]) -> list[Step]:
    """A short fault verdict followed by another fault verdict takes the latter's."""
    settled = list(steps)
    for index in range(len(settled) - 2, -1, -1):
        step, following = settled[index], settled[index + 1]
        if (
            _is_fault(step)
            and _is_fault(following)
            and step.end - step.start < SETTLE_SECONDS
            and step.verdict.suspects != following.verdict.suspects
        ):
            settled[index] = Step(step.start, step.end, following.verdict, step.observed)
    return settled


def _new_fault(previous: Step, step: Step) -> bool:
    if previous.verdict.verdict is VerdictName.PROBE_UNHEALTHY:
        return step.verdict.verdict is not VerdictName.PROBE_UNHEALTHY
    if step.verdict.verdict is VerdictName.PROBE_UNHEALTHY:
        return True
    before, now = set(previous.verdict.suspects), set(step.verdict.suspects)
    return bool(before and now and not before & now)


def _incidents(
    steps: list[Step], histories: Sequence[LegHistory], end: float
) -> tuple[Incident, ...]:
    runs: list[list[Step]] = []
    for index, step in enumerate(steps):
        if not _is_fault(step):
            continue
        previous = steps[index - 1] if index else None
        if previous is None or not _is_fault(previous) or _new_fault(previous, step):
            runs.append([step])
        else:
            runs[-1].append(step)
    return tuple(_incident(run, histories, end) for run in runs)


def _incident(run: list[Step], histories: Sequence[LegHistory], end: float) -> Incident:
    start, stop = run[0].start, run[-1].end
    verdicts = [step.verdict for step in run]
    suspects = tuple(dict.fromkeys(s for verdict in verdicts for s in verdict.suspects))
    kind = (
        VerdictName.PROBE_UNHEALTHY
        if verdicts[0].verdict is VerdictName.PROBE_UNHEALTHY
        else (VerdictName.SUSPECT if suspects else VerdictName.INCONCLUSIVE)
    )
    legs = []
    for history in histories:
        statuses = [verdict.leg_status.get(history.name) for verdict in verdicts]
        convicting = [status for status in statuses if status in CONVICTING]
        stalled = [status for status in statuses if status is LegStatus.STALLED]
        chosen = (convicting or stalled or [None])[0]
        if chosen is None:
            continue
        reasons = reasons_between(history, start, stop)
        legs.append(LegRole(history.name, chosen, reasons))
    return Incident(start, stop, kind, suspects, tuple(legs), ongoing=stop >= end)


def reasons_between(history: LegHistory, start: float, stop: float) -> tuple[Reason, ...]:
    """The reasons the leg went down for in the incident, or was down for at its start."""
    times = [change.at for change in history.changes]
    first = bisect.bisect_left(times, start)
    picked = [c for c in history.changes[first:] if c.at <= stop and not c.up]
    if first and not history.changes[first - 1].up:
        picked.insert(0, history.changes[first - 1])
    elif not first and history.initial_up is False and history.initial_reason is not None:
        return (history.initial_reason, *(c.reason for c in picked if c.reason is not None))
    return tuple(dict.fromkeys(c.reason for c in picked if c.reason is not None))


def lead(incidents: Sequence[Incident], at: float) -> Incident | None:
    """The incident covering ``at``, else the nearest one (earlier wins a tie)."""
    if not incidents:
        return None
    return min(incidents, key=lambda incident: (abs(incident.distance(at)), incident.start))
