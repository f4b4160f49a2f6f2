"""Evidence and finding → the short table a human reads in seconds, or one JSON object. Pure."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from t3probe.attribute.model import Drop, Evidence, LegEvidence, Percentiles
from t3probe.attribute.verdict import Finding

MAX_DROP_LINES = 10
_SOURCE_NAMES = {"prometheus": "Prometheus", "events": "the probe's /events"}
_HEADERS = ("LEG", "CONNECTED", "DROPS", "RTT BEFORE p50/p99", "RTT DURING p50/p99")


def text(evidence: Evidence, finding: Finding, tz: dt.tzinfo) -> str:
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
    lines.append(f"verdict: {finding.sentence}")
    return "\n".join(lines) + "\n"


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


def as_json(evidence: Evidence, finding: Finding, exit_code: int, tz: dt.tzinfo) -> dict[str, Any]:
    window = evidence.window
    statuses = dict(finding.leg_status)
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
