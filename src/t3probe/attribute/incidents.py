"""The window's incidents, the one that answers the user's TIME, and its sentence. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from t3probe.attribute.model import Evidence
from t3probe.attribute.timeline import Incident, Replay, lead, replay
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
    if not any(h.segments for h in evidence.histories) and evidence.probe_convictions:
        inside = [_probe_suspects(i, evidence) for i in inside]
        from_probe = True
    return Incidents(result, tuple(inside), lead(inside, window.at), from_probe)


def _probe_suspects(incident: Incident, evidence: Evidence) -> Incident:
    """Without the legs' segments, the suspects are those the probe itself convicted then."""
    slack = 2 * (evidence.scrape_interval or 1.0)
    convicted = tuple(
        dict.fromkeys(
            segment
            for segment, at in sorted(evidence.probe_convictions, key=lambda item: item[1])
            if incident.start <= at <= incident.end + slack
        )
    )
    verdict = incident.verdict
    if verdict is not VerdictName.PROBE_UNHEALTHY:
        verdict = VerdictName.SUSPECT if convicted else VerdictName.INCONCLUSIVE
    return dataclasses.replace(incident, suspects=convicted, verdict=verdict)


def sentence(incident: Incident) -> str:
    failing = [leg.name for leg in incident.legs]
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
