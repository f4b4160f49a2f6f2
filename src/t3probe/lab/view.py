"""The lab's live view: legs, their segments, RTTs, drops and the verdict, on 80x24.

:func:`snapshot` reads a running probe; :func:`render` is pure, so the layout is tested
on a made-up state without a lab.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from t3probe.daemon import Probe
from t3probe.reasons import NON_PATH_REASONS, Reason

CLEAR_SCREEN = "\x1b[H\x1b[2J"
# A classic terminal: everything that matters must fit without scrolling, with a line
# to spare for the cursor.
WIDTH = 80
MAX_LINES = 22
MAX_EVENTS = 5
DETAIL_CHARS = 48

# Noise in exception texts that says nothing to someone watching the lab.
_DETAIL_NOISE = (
    re.compile(r"\b[A-Z]\w*(?:Error|Exception|Exceeded)\b: "),  # Python class names
    re.compile(r" ?ssl:(?:default|True|False|None|<[^>]*>)"),
    re.compile(r" ?<[^>]* object at 0x[0-9a-f]+>"),
    # aiohttp repeats the address it already named as a socket address tuple.
    re.compile(r" ?\[Connect call failed \([^)]*\)\]"),
    re.compile(r"\('?[\w.:]+'?, \d+(?:, \d+, \d+)?\)"),
)


@dataclass(frozen=True)
class LegView:
    name: str
    state: str
    status: str
    for_seconds: float
    last_rtt: float | None
    reason: str | None
    segments: tuple[str, ...]
    drops: str
    # For saying why a leg that is up still convicts: since its latest drop, since it
    # came back from a failure, and how many path drops lie within the flap window.
    last_drop_ago: float | None = None
    back_for: float | None = None
    flap_drops: int = 0
    connections: int = 1
    connections_up: int = 0


@dataclass(frozen=True)
class ViewState:
    verdict: dict[str, Any]
    legs: tuple[LegView, ...]
    window: float
    flap_window: float
    flap_drops: int


def _drops(probe: Probe, leg: str) -> str:
    counts = []
    for reason in Reason:
        value = probe.registry.get_sample_value(
            "t3probe_disconnects_total", {"leg": leg, "reason": reason.value}
        )
        if value:
            counts.append(f"{reason.value}:{int(value)}")
    return " ".join(counts) or "-"


def snapshot(probe: Probe) -> ViewState:
    """What the view shows, read from a running probe."""
    verdict = probe.recorder.verdict_json()
    observations = {o.name: o for o in probe.recorder.observations()}
    wall, now = probe.clock.wall(), probe.clock.monotonic()
    config = probe.config
    legs = []
    for name, leg in verdict["legs"].items():
        seen = observations.get(name)
        drops = seen.recent_drops if seen is not None else ()
        back_since = (
            seen.up_since
            if seen is not None and seen.state == "up" and seen.recovered_from is not None
            else None
        )
        legs.append(
            LegView(
                name=name,
                state=leg["state"],
                status=leg["status"],
                for_seconds=max(0.0, wall - leg["since"]),
                last_rtt=leg["last_rtt_seconds"],
                reason=leg["reason"],
                segments=tuple(leg["segments"]),
                drops=_drops(probe, name),
                last_drop_ago=now - drops[-1][0] if drops else None,
                back_for=None if back_since is None else now - back_since,
                flap_drops=sum(
                    now - at <= config.effective_flap_window and reason not in NON_PATH_REASONS
                    for at, reason in drops
                ),
                connections=leg["connections"],
                connections_up=leg["connections_up"],
            )
        )
    return ViewState(
        verdict=verdict,
        legs=tuple(legs),
        window=config.attribution_window_seconds,
        flap_window=config.effective_flap_window,
        flap_drops=config.flap_drops,
    )


def _rtt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 100:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def verdict_line(verdict: dict[str, Any]) -> str:
    suspects = verdict["suspects"]
    text = f"verdict: {verdict['verdict']}"
    if suspects:
        text += " → " + ", ".join(suspects)
    blast = verdict.get("blast_radius") or {}
    if any(share < 1 for share in blast.values()):
        text += "  (blast radius: " + ", ".join(f"{s} {v:g}" for s, v in blast.items()) + ")"
    if verdict.get("unexplained"):
        text += f"  (unexplained failing legs: {', '.join(verdict['unexplained'])})"
    if verdict.get("unobserved"):
        text += f"  (unobserved: {', '.join(verdict['unobserved'])})"
    return text


def why_suspect(state: ViewState) -> list[str]:
    """Why a leg that is up still convicts: the evidence windows, which the table hides."""
    if state.verdict["verdict"] != "suspect":
        return []
    reasons = []
    for leg in state.legs:
        if leg.state != "up":
            continue
        if leg.status == "flapping":
            reasons.append(
                f"why: {leg.name} is flapping: {leg.flap_drops} drops within the flap window"
                f" of {state.flap_window:g}s"
            )
        elif leg.status == "failing" and leg.last_drop_ago is not None:
            if leg.last_drop_ago <= state.window or leg.back_for is None:
                reasons.append(
                    f"why: {leg.name} dropped {_duration(leg.last_drop_ago)} ago; counts for"
                    f" the attribution window of {state.window:g}s"
                )
            else:
                reasons.append(
                    f"why: {leg.name} came back {_duration(leg.back_for)} ago, within the"
                    f" attribution window of {state.window:g}s"
                )
    return reasons


def _leg_lines(leg: LegView) -> list[str]:
    return [
        f"{leg.name:<11}{leg.state:<8}{_duration(leg.for_seconds):>6}  {_rtt(leg.last_rtt):>9}"
        f"  {leg.reason or '-':<21}{leg.drops}",
        f"  {leg.status}: {' > '.join(leg.segments)}"
        + (f"  ({leg.connections_up}/{leg.connections} up)" if leg.connections > 1 else ""),
    ]


def render(
    state: ViewState, header: str, faults: str, events: Sequence[str], help_line: str
) -> str:
    """The screen: at most MAX_LINES lines of at most WIDTH columns, legs and verdict first
    to stay, recent events filling what room is left."""
    why = why_suspect(state)
    before_legs = [
        header,
        "",
        f"{'leg':<11}{'state':<8}{'for':>6}  {'last RTT':>9}  {'reason':<21}drops",
    ]
    after_legs = ["", verdict_line(state.verdict), *why, "", f"faults: {faults}"]
    room = MAX_LINES - len(before_legs) - len(after_legs) - 1  # the help line
    legs: list[str] = []
    for index, leg in enumerate(state.legs):
        rest = len(state.legs) - index
        lines = _leg_lines(leg)
        if len(legs) + len(lines) > room - (1 if rest > 1 else 0):
            legs.append(f"... and {rest} more legs: see /verdict")
            break
        legs += lines
    room -= len(legs)
    shown = list(events)[-min(MAX_EVENTS, room - 1) :] if room > 1 and events else []
    recent = ["recent events:", *(f"  {text}" for text in shown)] if shown else []
    lines = [*before_legs, *legs, *after_legs, *recent, help_line]
    return "\n".join(_fit(line) for line in lines[:MAX_LINES])


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def short_detail(detail: str, limit: int = DETAIL_CHARS) -> str:
    """An event's detail (often an exception's text) as one short readable line."""
    text = " ".join(detail.split())
    for noise in _DETAIL_NOISE:
        text = noise.sub("", text)
    text = " ".join(text.split()).strip(" :") or " ".join(detail.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clock_with_zone(at: float) -> str:
    """Local time with its UTC offset (14:03:05.123+01:00): pasted into ``t3probe attribute
    --at`` it names the same instant whatever the reader's zone."""
    moment = dt.datetime.fromtimestamp(at).astimezone()
    offset = moment.strftime("%z")
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}{offset[:3]}:{offset[3:]}"


def event_text(payload: dict[str, Any], indexed: bool = False) -> str:
    """One JSON event line as a short human-readable line; ``indexed`` names the
    connection (legs holding several)."""
    stamp = clock_with_zone(payload["at"])
    if payload.get("kind") == "verdict":
        return f"{stamp} {verdict_line(payload)}"
    leg = payload["leg"]
    if indexed and payload.get("connection") is not None:
        leg += f"[{payload['connection']}]"
    if payload.get("kind") == "burst":
        return f"{stamp} {leg} burst: {payload['dropped']} of {payload['of']} connections"
    reason = f" {payload['reason']}" if payload.get("reason") else ""
    detail = f" ({short_detail(payload['detail'])})" if payload.get("detail") else ""
    return f"{stamp} {leg} {payload['kind']}{reason}{detail}"
