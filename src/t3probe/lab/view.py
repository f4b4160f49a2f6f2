"""The lab's live view: legs, RTTs, drops by reason and the verdict, in place or plain."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from t3probe.daemon import Probe
from t3probe.reasons import Reason

CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _rtt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _drops(probe: Probe, leg: str) -> str:
    counts = []
    for reason in Reason:
        value = probe.registry.get_sample_value(
            "t3probe_disconnects_total", {"leg": leg, "reason": reason.value}
        )
        if value:
            counts.append(f"{reason.value}:{int(value)}")
    return " ".join(counts) or "-"


def verdict_line(verdict: dict[str, Any]) -> str:
    suspects = verdict["suspects"]
    text = f"verdict: {verdict['verdict']}"
    if suspects:
        text += " → " + ", ".join(suspects)
    if verdict.get("unexplained"):
        text += f"  (unexplained failing legs: {', '.join(verdict['unexplained'])})"
    if verdict.get("unobserved"):
        text += f"  (unobserved: {', '.join(verdict['unobserved'])})"
    return text


def render(probe: Probe, header: Iterable[str], footer: Iterable[str]) -> str:
    verdict = probe.recorder.verdict_json()
    now = time.time()
    lines = [*header, ""]
    lines.append(f"{'leg':<12}{'state':<7}{'for':>8}  {'last RTT':>10}  {'reason':<16}drops")
    for name, leg in verdict["legs"].items():
        state = leg["state"]
        lines.append(
            f"{name:<12}{state:<7}{now - leg['since']:>7.0f}s  {_rtt(leg['last_rtt_seconds']):>10}"
            f"  {leg['reason'] or '-':<16}{_drops(probe, name)}"
        )
    lines += ["", verdict_line(verdict), "", *footer]
    return "\n".join(lines)


def event_text(payload: dict[str, Any]) -> str:
    """One JSON event line as a human-readable line for non-terminal output."""
    stamp = (
        time.strftime("%H:%M:%S", time.localtime(payload["at"]))
        + f".{int(payload['at'] * 1000) % 1000:03d}"
    )
    if payload.get("kind") == "verdict":
        return f"{stamp} {verdict_line(payload)}"
    reason = f" {payload['reason']}" if payload.get("reason") else ""
    detail = f" ({payload['detail']})" if payload.get("detail") else ""
    return f"{stamp} {payload['leg']} {payload['kind']}{reason}{detail}"
