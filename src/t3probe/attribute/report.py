"""Evidence and finding → the short table a human reads in seconds, or one JSON object. Pure."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from t3probe.attribute.incidents import Incidents, sentence
from t3probe.attribute.mechanism_check import Check
from t3probe.attribute.model import Drop, Evidence, LegEvidence, Percentiles
from t3probe.attribute.timeline import Incident
from t3probe.attribute.verdict import Finding

MAX_DROP_LINES = 10
_SOURCE_NAMES = {"prometheus": "Prometheus", "events": "the probe's /events"}
_HEADERS = ("LEG", "CONNECTED", "DROPS", "RTT BEFORE p50/p99", "RTT DURING p50/p99")


def text(
    evidence: Evidence,
    finding: Finding,
    tz: dt.tzinfo,
    found: Incidents | None = None,
    checks: tuple[Check, ...] = (),
) -> str:
    window = evidence.window
    start = dt.datetime.fromtimestamp(window.start, tz)
    lines = [
        f"window {start:%Y-%m-%d %H:%M:%S} → {_clock(window.end, tz)} {_zone(start)}"
        f" (at {_clock(window.at, tz)}, {window.seconds:.0f} s),"
        f" from {_SOURCE_NAMES[evidence.source]} {evidence.url}",
    ]
    rows = [_HEADERS, *(_row(leg) for leg in evidence.legs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += _drop_lines(evidence, tz)
    lines += [f"note: {note}" for note in evidence.notes]
    if found is not None:
        lines += _no_data_line(evidence, found, tz)
        if found.from_probe and found.incidents:
            lines.append(
                "note: the legs' segments are unknown to Prometheus: the suspects are those"
                " the probe convicted; --config FILE replays its engine on the legs' segments"
            )
    lines.append(f"verdict: {finding.sentence}")
    if found is not None and found.lead is not None:
        lines.append(f"  {_where(found.lead, evidence.window.at, tz)}")
        if found.lead.slow_before is not None:
            lines.append(f"  {_slow_before(found.lead.slow_before, tz)}")
        if found.lead.slow_meanwhile:
            lines.append(f"  also slow meanwhile: {', '.join(found.lead.slow_meanwhile)}")
        lines += [f"  {line}" for line in _check_lines(found.lead, checks, tz)]
        others = [i for i in found.incidents if i is not found.lead]
        if others:
            lines.append(f"other incidents in the window ({len(others)}):")
            lines += [f"  {_span(i, tz)}  {sentence(i)}" for i in others]
    return "\n".join(lines) + "\n"


def _no_data_line(evidence: Evidence, found: Incidents, tz: dt.tzinfo) -> list[str]:
    first = found.replay.first_data
    window = evidence.window
    if first is None or first <= window.start:
        return []
    return [
        f"note: no data before {_clock(first, tz)} {_zone_at(first, tz)} (the probe's first"
        " sample): no evidence either way before it"
    ]


def _span(incident: Incident, tz: dt.tzinfo) -> str:
    end = f"still at {_clock(incident.end, tz)}" if incident.ongoing else _clock(incident.end, tz)
    return f"{_clock(incident.start, tz)} → {end} {_zone_at(incident.start, tz)}"


def _where(incident: Incident, at: float, tz: dt.tzinfo) -> str:
    distance = incident.distance(at)
    moment = f"{_clock(at, tz)} {_zone_at(at, tz)}"
    if distance == 0:
        relation = f"covers {moment}"
    elif distance < 0:
        relation = f"began {-distance:.0f} s after {moment} (the nearest incident)"
    else:
        relation = f"ended {distance:.0f} s before {moment} (the nearest incident)"
    legs = "; ".join(
        f"{leg.name} {leg.status}"
        + (f" ({', '.join(str(r) for r in leg.reasons)})" if leg.reasons else "")
        for leg in incident.legs
    )
    return f"incident {_span(incident, tz)}, {relation}; legs: {legs or '—'}"


def _slow_before(slow: Incident, tz: dt.tzinfo) -> str:
    what = ", ".join(slow.suspects) or ", ".join(leg.name for leg in slow.legs)
    return (
        f"slow before it: {what} degraded from {_clock(slow.start, tz)}"
        f" to {_clock(slow.end, tz)} {_zone_at(slow.start, tz)}"
    )


def _check_lines(incident: Incident, checks: tuple[Check, ...], tz: dt.tzinfo) -> list[str]:
    lines = []
    for check in checks:
        head = f"{check.segment} suspected — "
        if check.status == "fired" and check.start is not None and check.end is not None:
            until = "still at" if check.open_ended else "to"
            lines.append(
                f"{head}{check.describe()} from {_clock(check.start, tz)} {until}"
                f" {_clock(check.end, tz)} {_zone_at(check.start, tz)}"
            )
            lines.append(f"    look further: {check.definition.query}")
        else:
            lines.append(f"{head}{check.describe()}")
    return lines


def _zone_at(at: float, tz: dt.tzinfo) -> str:
    return _zone(dt.datetime.fromtimestamp(at, tz))


def _row(leg: LegEvidence) -> tuple[str, str, str, str, str]:
    return (
        leg.name,
        _connected(leg),
        _drops(leg),
        _rtt(leg.rtt_before),
        _rtt(leg.rtt_during),
    )


def _connected(leg: LegEvidence) -> str:
    if not leg.observed:
        return "no data"
    if leg.connected_throughout is None:
        return "? (gap)"
    return "yes" if leg.connected_throughout else "no"


def _drops(leg: LegEvidence) -> str:
    if not leg.observed and not leg.drop_counts:
        return "—"
    if not leg.drop_counts:
        return "0"
    parts = [str(r) if n == 1 else f"{r} x{n}" for r, n in leg.drop_counts]
    return f"{leg.drop_total}: {', '.join(parts)}"


def _rtt(value: Percentiles | None) -> str:
    if value is None or (value.p50 is None and value.p99 is None):
        return "—"
    return f"{_seconds(value.p50)}/{_seconds(value.p99)}"


def _seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    if value < 0.01:
        return f"{value * 1000:.1f}ms"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s"


def _drop_lines(evidence: Evidence, tz: dt.tzinfo) -> list[str]:
    timed = sorted(
        ((drop.at, leg.name, drop) for leg in evidence.legs for drop in leg.drops if drop.at),
        key=lambda item: item[0] or 0.0,
    )
    if not timed:
        return []
    lines = ["drops:"]
    for at, name, drop in timed[:MAX_DROP_LINES]:
        lines.append(f"  {_clock(at or 0.0, tz, millis=True)}  {name}  {_drop_detail(drop)}")
    if len(timed) > MAX_DROP_LINES:
        lines.append(f"  … and {len(timed) - MAX_DROP_LINES} more (--json lists them all)")
    return lines


def _drop_detail(drop: Drop) -> str:
    if drop.reason is None:
        return "drop (reason in the table; Prometheus keeps the last drop per scrape)"
    parts = [str(drop.reason)]
    if drop.close_code is not None:
        parts.append(f"close={drop.close_code}")
    if drop.age_seconds is not None:
        parts.append(f"age={drop.age_seconds:.1f}s")
    if drop.last_rtt_seconds is not None:
        parts.append(f"rtt={_seconds(drop.last_rtt_seconds)}")
    if drop.detail:
        parts.append(drop.detail[:60])
    return "  ".join(parts)


def _clock(at: float, tz: dt.tzinfo, millis: bool = False) -> str:
    moment = dt.datetime.fromtimestamp(at, tz)
    fraction = f".{moment.microsecond // 1000:03d}" if millis else ""
    return f"{moment:%H:%M:%S}{fraction}"


def _zone(moment: dt.datetime) -> str:
    return moment.tzname() or moment.strftime("%z")


def as_json(
    evidence: Evidence,
    finding: Finding,
    exit_code: int,
    tz: dt.tzinfo,
    found: Incidents | None = None,
    checks: tuple[Check, ...] = (),
) -> dict[str, Any]:
    window = evidence.window
    statuses = dict(finding.leg_status)
    listed = found.incidents if found is not None else ()
    lead = found.lead if found is not None else None
    first = found.replay.first_data if found is not None else None
    return {
        "outcome": finding.outcome,
        "exit_code": exit_code,
        "summary": finding.sentence,
        "verdict": finding.verdict,
        "suspects": list(finding.suspects),
        "failing_legs": list(finding.failing),
        "probe_suspects": (
            None if evidence.probe_suspects is None else list(evidence.probe_suspects)
        ),
        "source": {"kind": evidence.source, "url": evidence.url},
        "window": {
            "at": _stamp(window.at, tz),
            "start": _stamp(window.start, tz),
            "end": _stamp(window.end, tz),
            "seconds": round(window.seconds, 3),
            "clipped_to_now": window.clipped,
        },
        "legs": [
            _leg_json(leg, str(statuses.get(leg.name, "unknown")), tz) for leg in evidence.legs
        ],
        "notes": list(evidence.notes),
        "first_data": None if first is None else _stamp(first, tz),
        "incident": None if lead is None else _incident_json(lead, window.at, tz, checks),
        "incidents": [_incident_json(i, window.at, tz, ()) for i in listed],
    }


def _incident_json(
    incident: Incident, at: float, tz: dt.tzinfo, checks: tuple[Check, ...]
) -> dict[str, Any]:
    return {
        "start": _stamp(incident.start, tz),
        "end": _stamp(incident.end, tz),
        "ongoing": incident.ongoing,
        "seconds_from_at": round(incident.distance(at), 3),
        "verdict": str(incident.verdict),
        "summary": sentence(incident),
        "suspects": list(incident.suspects),
        "legs": [
            {"leg": leg.name, "status": str(leg.status), "reasons": [str(r) for r in leg.reasons]}
            for leg in incident.legs
        ],
        "evidence": [_check_json(check, tz) for check in checks],
        # A fault's: the degraded incident that ran up to it (the path was slow first),
        # and segments slow during it.
        "slow_meanwhile": list(incident.slow_meanwhile),
        "slow_before": (
            None
            if incident.slow_before is None
            else _incident_json(incident.slow_before, at, tz, ())
        ),
    }


def _check_json(check: Check, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "segment": check.segment,
        "name": check.definition.name,
        "status": check.status,
        "summary": check.describe(),
        "start": None if check.start is None else _stamp(check.start, tz),
        "end": None if check.end is None else _stamp(check.end, tz),
        "open_ended": check.open_ended,
        "peak": check.peak,
        "where": check.where or None,
        "query": check.definition.query,
    }


def _stamp(at: float, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "unix": round(at, 3),
        "time": dt.datetime.fromtimestamp(at, tz).isoformat(timespec="milliseconds"),
    }


def _leg_json(leg: LegEvidence, status: str, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "leg": leg.name,
        "status": status,
        "observed": leg.observed,
        "connected_throughout": leg.connected_throughout,
        "state": leg.state,
        "reason": None if leg.reason is None else str(leg.reason),
        "drops": {str(reason): count for reason, count in leg.drop_counts},
        "drop_events": [_drop_json(drop, tz) for drop in leg.drops],
        "rtt_seconds": {
            "before": _percentiles_json(leg.rtt_before),
            "during": _percentiles_json(leg.rtt_during),
        },
        # Prometheus does not export which segments a leg crosses: null, not "none".
        "segments": list(leg.segments) or None,
        "unobserved": [[round(a, 3), round(b, 3)] for a, b in leg.gaps],
    }


def _drop_json(drop: Drop, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "at": None if drop.at is None else _stamp(drop.at, tz),
        "reason": None if drop.reason is None else str(drop.reason),
        "close_code": drop.close_code,
        "age_seconds": drop.age_seconds,
        "last_rtt_seconds": drop.last_rtt_seconds,
        "detail": drop.detail,
    }


def _percentiles_json(value: Percentiles | None) -> dict[str, float | None] | None:
    if value is None:
        return None
    return {"p50": _finite(value.p50), "p99": _finite(value.p99)}


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; an RTT beyond the top bucket reads as null.
    if value is None or not math.isfinite(value):
        return None
    return value
