"""A probe's ``/events`` and ``/verdict`` → evidence for a window. Pure.

``/events`` places every drop to the millisecond with its reason, close code, age and
last RTT, but it is a bounded ring buffer of *changes*: a leg's state through the window
is replayed from the last change before it. ``/verdict`` supplies that change when it
predates the buffer (``since``: the leg has been in its current state since then), and
the list of legs. What these two cannot give: RTT percentiles (Prometheus has them) and
the legs' segments — unless ``/verdict`` lists them per leg (``segments``), in which case
the suspects are computed here by the probe's own engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from t3probe.attribute.model import Drop, Evidence, LegEvidence, SourceError, Window
from t3probe.attribute.timeline import Change, LegHistory, slow_spans
from t3probe.attribution import LinkState
from t3probe.reasons import Reason

# Beyond this, the probe's and our own clock disagree enough to shift the window.
CLOCK_SKEW_NOTE_SECONDS = 2.0
# A leg that stays up became slow / stopped being so: not changes of up or down.
_SLOWNESS_KINDS = ("degraded", "recovered")


@dataclass(frozen=True)
class _Event:
    leg: str
    kind: str
    at: float
    reason: Reason | None
    drop: Drop
    # Whether it changed the leg's state: with several connections, the leg goes down
    # with the first of them to drop and comes up when the last of those is back.
    transition: bool = True


@dataclass(frozen=True)
class _Current:
    state: LinkState
    reason: Reason | None
    since: float
    segments: tuple[str, ...]


def evidence(
    url: str,
    window: Window,
    verdict: Any,
    events: Any,
    now: float,
    lead: float = 0.0,
    segments: Mapping[str, tuple[str, ...]] | None = None,
) -> Evidence:
    current = _current_legs(verdict)
    parsed = _events(events)
    slowness = [event for event in parsed if event.kind in _SLOWNESS_KINDS]
    parsed = [event for event in parsed if event.kind not in _SLOWNESS_KINDS]
    names = list(current)
    names += sorted({event.leg for event in parsed} - set(current))
    legs = tuple(_leg(name, current.get(name), parsed, window) for name in names)
    start = window.start - lead
    # The history reaches past the window too, so an incident in it gets its real end.
    end = min(now, window.end + lead)
    histories = tuple(
        dataclasses.replace(
            _history(name, current.get(name), parsed, start, end, (segments or {}).get(name)),
            slow=_slow(name, parsed, slowness, start, end),
        )
        for name in names
    )
    notes = []
    probe_now = verdict.get("at") if isinstance(verdict, dict) else None
    if isinstance(probe_now, int | float) and abs(probe_now - now) > CLOCK_SKEW_NOTE_SECONDS:
        notes.append(
            f"the probe's clock is {probe_now - now:+.1f} s off ours: event times are the probe's"
        )
    if window.clipped:
        notes.append("the window was cut at now: the rest lies in the future")
    notes.append("RTT percentiles are not in /events: ask Prometheus (--prometheus) for them")
    segments_known = bool(current) and all(c.segments for c in current.values())
    if not segments_known:
        notes.append("segments: /verdict does not list each leg's segments")
    return Evidence(
        "events",
        url,
        window,
        legs,
        probe_suspects=None,
        notes=tuple(notes),
        histories=histories,
        history_start=start,
        history_end=end,
    )


def _history(
    name: str,
    current: _Current | None,
    events: list[_Event],
    start: float,
    end: float,
    segments: tuple[str, ...] | None,
) -> LegHistory:
    """The leg's changes from ``start``, and its state then (see :func:`_leg`)."""
    own = sorted((e for e in events if e.leg == name and e.transition), key=lambda e: e.at)
    before = [e for e in own if e.at < start]
    inside = [e for e in own if start <= e.at <= end]
    initial_up: bool | None
    if current is not None and current.since <= start:
        initial_up, reason = current.state == "up", current.reason
        if current.state == "unknown":
            initial_up = None
    elif before:
        initial_up, reason = before[-1].kind == "up", before[-1].reason
    else:
        initial_up, reason = None, None
    first = start if initial_up is not None else (inside[0].at if inside else None)
    changes = tuple(
        Change(e.at, e.kind == "up", None if e.kind == "up" else e.reason) for e in inside
    )
    known = segments if segments is not None else (current.segments if current else ())
    return LegHistory(
        name, known, first, initial_up, reason if initial_up is False else None, changes
    )


def _slow(
    name: str, changes: list[_Event], slowness: list[_Event], start: float, end: float
) -> tuple[tuple[float, float], ...]:
    """The leg's slow spans in [start, end]: from its degraded/recovered events, a down
    ending slowness as in the live probe (whose ``down`` says what happened)."""
    marks = [(e.at, e.kind == "degraded") for e in slowness if e.leg == name]
    downs = [e.at for e in changes if e.leg == name and e.kind == "down" and e.transition]
    spans = slow_spans(sorted(marks), downs, end)
    return tuple((max(a, start), b) for a, b in spans if b > start)


def _leg(name: str, current: _Current | None, events: list[_Event], window: Window) -> LegEvidence:
    own = sorted((e for e in events if e.leg == name), key=lambda e: e.at)
    before = [e for e in own if e.at < window.start and e.transition]
    # Every connection's drop is a drop (a user cut off); the state follows the leg's.
    every = [e for e in own if window.start <= e.at <= window.end]
    inside = [e for e in every if e.transition]
    state_at_start: LinkState
    reason_at_start: Reason | None
    if current is not None and current.since <= window.start:
        # No change since before the window: the current state held throughout.
        state_at_start, reason_at_start = current.state, current.reason
    elif before:
        state_at_start = "up" if before[-1].kind == "up" else "down"
        reason_at_start = before[-1].reason
    else:
        # The buffer does not reach back to the window: the probe was not running, or
        # the ring buffer has moved on.
        state_at_start, reason_at_start = "unknown", None
    drops = tuple(e.drop for e in every if e.kind == "down")
    known_start = state_at_start != "unknown"
    state, reason = state_at_start, reason_at_start
    if inside:
        state = "up" if inside[-1].kind == "up" else "down"
        reason = inside[-1].reason
    if not known_start and not drops:
        state, reason = "unknown", None
    connected: bool | None
    if drops or state_at_start == "down":
        connected = False
    else:
        connected = True if state_at_start == "up" else None
    counts: dict[Reason, int] = {}
    for drop in drops:
        if drop.reason is not None:
            counts[drop.reason] = counts.get(drop.reason, 0) + 1
    return LegEvidence(
        name,
        observed=known_start or bool(inside),
        connected_throughout=connected,
        state=state,
        reason=reason if state == "down" else None,
        drop_counts=tuple(sorted(counts.items())),
        drops=drops,
        segments=current.segments if current is not None else (),
        gaps=() if known_start else ((window.start, inside[0].at if inside else window.end),),
    )


def _current_legs(verdict: Any) -> dict[str, _Current]:
    legs = verdict.get("legs") if isinstance(verdict, dict) else None
    if not isinstance(legs, dict):
        raise SourceError("the probe's /verdict has no 'legs' object: is this a t3probe?")
    current = {}
    for name, leg in legs.items():
        if not isinstance(leg, Mapping):
            raise SourceError(f"/verdict: leg {name!r} is not an object")
        state: LinkState
        raw_state = leg.get("state")
        if raw_state in ("up", "down", "unknown"):
            state = raw_state
        else:
            state = "up" if leg.get("up") is True else "down"
        segments = leg.get("segments")
        current[str(name)] = _Current(
            state,
            _reason(leg.get("reason")),
            _float(leg.get("since"), "since"),
            tuple(str(s) for s in segments) if isinstance(segments, list) else (),
        )
    return current


def _events(document: Any) -> list[_Event]:
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise SourceError("the probe's /events has no 'events' list: is this a t3probe?")
    parsed = []
    # Per leg, its connections seen down and not back up since, and its latest change.
    down: dict[str, set[int]] = {}
    last: dict[str, str] = {}
    for item in events:
        if not isinstance(item, Mapping) or item.get("kind") not in (
            "up",
            "down",
            *_SLOWNESS_KINDS,
        ):
            continue  # newer event kinds are not drops
        reason = _reason(item.get("reason"))
        at = _float(item.get("at"), "at")
        close_code = item.get("close_code")
        drop = Drop(
            reason,
            at=at,
            detail=str(item.get("detail") or "")[:300],
            close_code=close_code if isinstance(close_code, int) else None,
            age_seconds=_optional_float(item.get("age_seconds")),
            last_rtt_seconds=_optional_float(item.get("last_rtt_seconds")),
        )
        leg, kind = str(item.get("leg")), str(item["kind"])
        transition = True
        if kind in ("up", "down"):
            # Before connections, an event had no index: the leg's one connection.
            connection = item.get("connection", 0)
            held = down.setdefault(leg, set())
            was_whole = not held
            if kind == "down":
                held.add(connection if isinstance(connection, int) else 0)
                transition = was_whole
            else:
                held.discard(connection if isinstance(connection, int) else 0)
                transition = not held and last.get(leg) != "up"
            if transition:
                last[leg] = kind
        parsed.append(_Event(leg, kind, at, reason, drop, transition))
    return parsed


def _reason(value: Any) -> Reason | None:
    if value is None:
        return None
    try:
        return Reason(str(value))
    except ValueError:
        return Reason.INTERNAL_ERROR  # a reason from a newer probe: a drop, not a path verdict


def _float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceError(f"the probe's answer has a non-numeric {field!r}: {value!r}")
    return float(value)


def _optional_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
