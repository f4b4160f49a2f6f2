"""Evidence → verdict, through the same attribution engine the probe runs live.

Pure. Each leg's evidence becomes a :class:`LegObservation` as the probe would have seen
it at the window's end with an attribution window spanning the whole window: a leg
that dropped for a path reason anywhere in it, or was down for one, is failing.

Exonerating needs every leg observed through the whole window and clean; anything less
is "no data" or "no verdict", never "clean". Conversely the probe's own convictions
during the window (``t3probe_segment_suspected``) count even when the window shows no
drop itself: the conviction may stem from a drop just before it, and an infra fault
that close to the user's report must not be explained away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from t3probe.attribute.model import Evidence, LegEvidence
from t3probe.attribution import LegObservation, LegStatus, VerdictName, compute_verdict
from t3probe.reasons import Reason

# "degraded": the path was slow (not down) at the time, which a replayed incident shows;
# the window alone never says so (it judges up and down only).
Outcome = Literal["clean", "infra_fault", "degraded", "no_data"]

NO_DATA_SENTENCE = "no data — the probe was not running / not scraped (cannot exonerate)"
CLEAN_SENTENCE = "all legs clean — infra exonerated"


@dataclass(frozen=True)
class Finding:
    outcome: Outcome
    verdict: VerdictName
    sentence: str
    suspects: tuple[str, ...] = ()
    failing: tuple[str, ...] = ()
    leg_status: tuple[tuple[str, LegStatus], ...] = ()


def observation(leg: LegEvidence, at: float) -> LegObservation:
    drops: list[tuple[float, Reason]] = [
        (drop.at if drop.at is not None else at, drop.reason)
        for drop in leg.drops
        if drop.reason is not None
    ]
    if not drops:
        # Counts without timestamps (Prometheus) still convict: any time in the window will do.
        drops = [(at, reason) for reason, count in leg.drop_counts if count > 0]
    return LegObservation(leg.name, leg.segments, leg.state, leg.reason, tuple(drops))


def judge(evidence: Evidence) -> Finding:
    window = evidence.window
    legs = [observation(leg, window.end) for leg in evidence.legs]
    # A little slack so a drop stamped exactly at the window's start still counts.
    engine = compute_verdict(legs, window.end, window.seconds + 1e-3)
    statuses = tuple((leg.name, engine.leg_status[leg.name]) for leg in legs)
    failing = tuple(name for name, status in statuses if status is LegStatus.FAILING)
    if not any(leg.observed for leg in evidence.legs):
        return Finding("no_data", VerdictName.UNKNOWN, NO_DATA_SENTENCE, leg_status=statuses)
    if engine.verdict == "probe_unhealthy":
        stalled = [name for name, status in statuses if status is LegStatus.STALLED]
        return Finding(
            "no_data",
            engine.verdict,
            f"no verdict — the probe itself stalled (probe_stall on {_names(stalled)}):"
            " it can neither convict nor exonerate",
            leg_status=statuses,
        )
    probe_suspects = evidence.probe_suspects or ()
    suspects = tuple(dict.fromkeys((*engine.suspects, *probe_suspects)))
    if failing or suspects:
        return Finding(
            "infra_fault",
            # Failing legs that no segment explains: never "suspect" with nobody suspected.
            VerdictName.SUSPECT if suspects else VerdictName.INCONCLUSIVE,
            _fault_sentence(evidence, suspects, failing),
            suspects=suspects,
            failing=failing,
            leg_status=statuses,
        )
    # A leg that was down for a reason saying nothing about the path (dns_failed) is
    # healthy to the engine once it is back, but it measured nothing meanwhile.
    if engine.verdict == "infra_clean" and all(leg.connected_throughout for leg in evidence.legs):
        return Finding("clean", engine.verdict, CLEAN_SENTENCE, leg_status=statuses)
    # The engine may call that infra_clean; without full coverage it is not.
    return Finding("no_data", VerdictName.UNKNOWN, _unknown_sentence(evidence), leg_status=statuses)


def _fault_sentence(evidence: Evidence, suspects: tuple[str, ...], failing: tuple[str, ...]) -> str:
    failing_text = f" (failing: {_names(failing)})" if failing else ""
    if suspects:
        noun = "segment" if len(suspects) == 1 else "segments"
        return f"infra fault — suspect {noun} {', '.join(suspects)}{failing_text}"
    if evidence.source == "events":
        where = (
            "/verdict does not list the legs' segments; ask Prometheus (--prometheus)"
            " or read the probe's config"
        )
    else:
        where = "the probe convicted no segment in the window"
    return f"infra fault on the route of {_names(failing)} — segments unknown: {where}"


def _unknown_sentence(evidence: Evidence) -> str:
    unobserved = [leg.name for leg in evidence.legs if leg.state == "unknown"]
    non_path = [
        leg.name for leg in evidence.legs if leg.state != "unknown" and not leg.connected_throughout
    ]
    parts = []
    if unobserved:
        parts.append(f"{_names(unobserved)} not observed through the whole window")
    if non_path:
        parts.append(
            f"{_names(non_path)} down in the window for a reason that says nothing about"
            " the path or that lies before the window"
        )
    detail = "; ".join(parts) or "the legs' states are unknown"
    return f"no verdict — {detail} (cannot exonerate)"


def _names(names: list[str] | tuple[str, ...]) -> str:
    label = "leg" if len(names) == 1 else "legs"
    return f"{label} {', '.join(names)}"
