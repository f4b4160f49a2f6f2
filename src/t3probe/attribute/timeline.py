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

Slowness is replayed as the live probe keeps it: a leg is degraded inside its slow spans
while up, and counts as slow for the attribution window after a span ends (its recovery,
or the drop that ended it). Runs of ``degraded`` verdicts (and of ``inconclusive`` ones
that only slow legs cause) are incidents of their own kind, never mistaken for a fault:
the path was slow, not broken. A fault that follows slowness keeps it as ``slow_before``.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Iterable, Sequence
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
# Bounds a leg's slow spans (a leg flickering around its threshold for a day).
MAX_SLOW_SPANS = 2_000


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
    # [start, end) spans while the leg was degraded (slow or losing heartbeats).
    slow: tuple[tuple[float, float], ...] = ()

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
            degraded, slow_at = self._slowness(at)
            # Looking back, an up leg answered its heartbeats right up to this moment.
            return LegObservation(
                self.name,
                self.segments,
                "up",
                recent_drops=drops,
                up_since=up_since,
                recovered_from=recovered_from,
                last_success_at=at,
                degraded=degraded,
                slow_at=slow_at,
            )
        return LegObservation(self.name, self.segments, "down", reason, recent_drops=drops)

    def _slowness(self, at: float) -> tuple[bool, float | None]:
        """Degraded now, and when last seen slow: as the live probe notes it at every slow
        heartbeat, slow_at is now inside a span and the span's end after it."""
        begun = bisect.bisect_right(self.slow, at, key=lambda span: span[0])
        if not begun:
            return False, None
        end = self.slow[begun - 1][1]
        return (True, at) if at < end else (False, end)


def slow_spans(
    marks: Sequence[tuple[float, bool]], downs: Sequence[float], end: float
) -> tuple[tuple[float, float], ...]:
    """A leg's slow spans from time-ordered marks (True: seen degraded, False: seen not)
    and its drops: a drop ends slowness, as in the live probe, and a span still open at
    ``end`` ends there."""
    timeline = sorted([*marks, *((at, None) for at in downs)], key=lambda item: item[0])
    spans: list[tuple[float, float]] = []
    opened: float | None = None
    for at, slow in timeline:
        if at > end:
            break
        if slow and opened is None:
            opened = at
        elif not slow and opened is not None:
            if at > opened:
                spans.append((opened, at))
            opened = None
    if opened is not None and end > opened:
        spans.append((opened, end))
    return tuple(spans[-MAX_SLOW_SPANS:])


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
    # A fault's: the degraded incident on its legs or segments that ran up to it (the
    # path was slow first), and segments found slow during it (the engine's ``degraded``).
    slow_before: Incident | None = None
    slow_meanwhile: tuple[str, ...] = ()

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
        _incidents(settled, histories, end, policy),
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
        for slow_start, slow_end in history.slow:
            moments.update((slow_start, slow_end, slow_end + policy.window + _EPSILON))
    inside = sorted(moment for moment in moments if start <= moment < end)
    return inside[:MAX_STEPS]


def _is_fault(step: Step) -> bool:
    verdict = step.verdict
    if verdict.verdict is VerdictName.INCONCLUSIVE:
        # Inconclusive because slow legs no segment explains: slowness, not a fault.
        return any(status in CONVICTING for status in verdict.leg_status.values())
    return verdict.verdict in FAULT_VERDICTS


def _is_slow(step: Step) -> bool:
    verdict = step.verdict
    return verdict.verdict is VerdictName.DEGRADED or (
        verdict.verdict is VerdictName.INCONCLUSIVE and not _is_fault(step)
    )


def _kind(step: Step) -> str | None:
    return "fault" if _is_fault(step) else ("slow" if _is_slow(step) else None)


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
    steps: list[Step], histories: Sequence[LegHistory], end: float, policy: Policy
) -> tuple[Incident, ...]:
    runs: list[list[Step]] = []
    for index, step in enumerate(steps):
        kind = _kind(step)
        if kind is None:
            continue
        previous = steps[index - 1] if index else None
        if previous is None or _kind(previous) != kind or _new_fault(previous, step):
            runs.append([step])
        else:
            runs[-1].append(step)
    found: list[Incident] = []
    for run in runs:
        incident = _incident(run, histories, end)
        before = found[-1] if found else None
        if (
            incident.verdict is not VerdictName.DEGRADED
            and before is not None
            and before.verdict is VerdictName.DEGRADED
            # Slowness that was still held (or only just over) when the fault began.
            and incident.start - before.end <= policy.window
            and _related(before, incident)
        ):
            incident = dataclasses.replace(incident, slow_before=before)
        found.append(incident)
    return tuple(found)


def _related(slow: Incident, fault: Incident) -> bool:
    """Slowness on the fault's segments or legs: another route's is no prelude to it."""
    if set(slow.suspects) & set(fault.suspects):
        return True
    return bool({leg.name for leg in slow.legs} & {leg.name for leg in fault.legs})


def _incident(run: list[Step], histories: Sequence[LegHistory], end: float) -> Incident:
    start, stop = run[0].start, run[-1].end
    verdicts = [step.verdict for step in run]
    suspects = tuple(dict.fromkeys(s for verdict in verdicts for s in verdict.suspects))
    if _is_slow(run[0]):
        kind = VerdictName.DEGRADED
    elif verdicts[0].verdict is VerdictName.PROBE_UNHEALTHY:
        kind = VerdictName.PROBE_UNHEALTHY
    else:
        kind = VerdictName.SUSPECT if suspects else VerdictName.INCONCLUSIVE
    wanted = {LegStatus.DEGRADED} if kind is VerdictName.DEGRADED else CONVICTING
    legs = []
    for history in histories:
        statuses = [verdict.leg_status.get(history.name) for verdict in verdicts]
        convicting = [status for status in statuses if status in wanted]
        stalled = [status for status in statuses if status is LegStatus.STALLED]
        chosen = (convicting or stalled or [None])[0]
        if chosen is None:
            continue
        reasons = () if kind is VerdictName.DEGRADED else reasons_between(history, start, stop)
        legs.append(LegRole(history.name, chosen, reasons))
    meanwhile = () if kind is VerdictName.DEGRADED else _union(v.degraded for v in verdicts)
    return Incident(
        start, stop, kind, suspects, tuple(legs), ongoing=stop >= end, slow_meanwhile=meanwhile
    )


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


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
