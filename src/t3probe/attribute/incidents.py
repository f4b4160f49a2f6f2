"""The window's incidents, the one that answers the user's TIME, and its sentence. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from t3probe.attribute.model import Evidence
from t3probe.attribute.timeline import Incident, LegRole, Replay, lead, reasons_between, replay
from t3probe.attribution import Policy, VerdictName

# The live probe's defaults (config.py): attribution window, three 20 s watchdogs.
DEFAULT_POLICY = Policy(window=20.0, flap_window=60.0, flap_drops=2)


@dataclass(frozen=True)
class Incidents:
    replay: Replay
    # Those overlapping the window, in time order; ``lead`` is one of them or None.
    incidents: tuple[Incident, ...]
    lead: Incident | None
    # Segments came from the probe's own convictions (Prometheus, no --config).
    from_probe: bool = False


def lead_in(policy: Policy) -> float:
    """How far before the window evidence may still count at its start."""
    return max(policy.window, policy.flap_window)


def incidents(evidence: Evidence, policy: Policy) -> Incidents:
    window = evidence.window
    start = window.start if evidence.history_start is None else evidence.history_start
    end = window.end if evidence.history_end is None else max(window.end, evidence.history_end)
    result = replay(evidence.histories, start, end, policy)
    inside = [i for i in result.incidents if i.end > window.start and i.start <= window.end]
    from_probe = False
    if not any(h.segments for h in evidence.histories):
        if evidence.probe_convictions:
            inside = [
                part
                for i in inside
                for part in (
                    [i] if i.verdict is VerdictName.DEGRADED else _probe_suspects(i, evidence)
                )
            ]
            from_probe = True
        if evidence.probe_slow:
            inside = [_probe_slow(i, evidence) for i in inside]
            from_probe = True
    return Incidents(result, tuple(inside), lead(inside, window.at), from_probe)


def _probe_slow(incident: Incident, evidence: Evidence) -> Incident:
    """Without the legs' segments, a slowness's suspects are those the probe itself
    found slow then (``t3probe_segment_degraded``); a fault keeps its own."""
    if incident.slow_before is not None:
        incident = dataclasses.replace(
            incident, slow_before=_probe_slow(incident.slow_before, evidence)
        )
    if incident.verdict is not VerdictName.DEGRADED:
        return incident
    slack = 2 * (evidence.scrape_interval or 1.0)
    slow = sorted(
        {s for s, at in evidence.probe_slow if incident.start <= at <= incident.end + slack}
    )
    return dataclasses.replace(incident, suspects=tuple(slow)) if slow else incident


def _probe_suspects(incident: Incident, evidence: Evidence) -> list[Incident]:
    """Without the legs' segments, the suspects are those the probe itself convicted then;
    where its convictions turn to disjoint segments, a new fault began: a new incident,
    from the first drop since the scrape before."""
    slack = 2 * (evidence.scrape_interval or 1.0)
    scrapes: dict[float, set[str]] = {}
    for segment, at in evidence.probe_convictions:
        if incident.start <= at <= incident.end + slack:
            scrapes.setdefault(at, set()).add(segment)
    parts: list[tuple[float, list[str]]] = []
    previous: set[str] = set()
    previous_at = incident.start
    for at in sorted(scrapes):
        now = scrapes[at]
        if not parts:
            parts.append((incident.start, []))
        elif previous and not previous & now:
            parts.append((_first_drop(evidence, previous_at, at), []))
        parts[-1][1].extend(s for s in sorted(now) if s not in parts[-1][1])
        previous, previous_at = now, at
    if not parts:
        parts.append((incident.start, []))
    pieces = []
    for index, (start, segments) in enumerate(parts):
        end = parts[index + 1][0] if index + 1 < len(parts) else incident.end
        verdict = incident.verdict
        if verdict is not VerdictName.PROBE_UNHEALTHY:
            verdict = VerdictName.SUSPECT if segments else VerdictName.INCONCLUSIVE
        pieces.append(
            dataclasses.replace(
                incident,
                start=start,
                end=end,
                suspects=tuple(segments),
                verdict=verdict,
                legs=_legs_in(incident, evidence, start, end) if len(parts) > 1 else incident.legs,
                ongoing=incident.ongoing and index == len(parts) - 1,
                slow_before=incident.slow_before if index == 0 else None,
            )
        )
    return pieces


def _first_drop(evidence: Evidence, after: float, until: float) -> float:
    drops = [
        change.at
        for history in evidence.histories
        for change in history.changes
        if not change.up and after < change.at <= until
    ]
    return min(drops, default=until)


def _legs_in(
    incident: Incident, evidence: Evidence, start: float, end: float
) -> tuple[LegRole, ...]:
    """The incident's legs that dropped in this part of it (all of them if none did)."""
    histories = {history.name: history for history in evidence.histories}
    picked = []
    for leg in incident.legs:
        history = histories.get(leg.name)
        if history is None:
            continue
        if any(not c.up and start <= c.at < end for c in history.changes):
            picked.append(dataclasses.replace(leg, reasons=reasons_between(history, start, end)))
    return tuple(picked) or incident.legs


def sentence(incident: Incident) -> str:
    failing = [leg.name for leg in incident.legs]
    if incident.verdict is VerdictName.DEGRADED:
        slow_legs = f"degraded: {_names(failing)}"
        if incident.suspects:
            noun = "segment" if len(incident.suspects) == 1 else "segments"
            return (
                f"degraded (slow, not down) — slow {noun} {', '.join(incident.suspects)}"
                f" ({slow_legs})"
            )
        return (
            f"degraded (slow, not down) on the route of {_names(failing)} — no segment"
            " explains it (fast legs cross them all), or the segments are unknown"
        )
    if incident.verdict is VerdictName.PROBE_UNHEALTHY:
        return (
            f"no verdict — the probe itself stalled ({_names(failing)}):"
            " it can neither convict nor exonerate"
        )
    failing_text = f" (failing: {_names(failing)})" if failing else ""
    if incident.suspects:
        noun = "segment" if len(incident.suspects) == 1 else "segments"
        return f"infra fault — suspect {noun} {', '.join(incident.suspects)}{failing_text}"
    return (
        f"infra fault on the route of {_names(failing)} — segments unknown: give the probe's"
        " config (--config) or ask its /events"
    )


def _names(names: Sequence[str]) -> str:
    label = "leg" if len(names) == 1 else "legs"
    return f"{label} {', '.join(names)}"
