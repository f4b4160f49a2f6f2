"""What Grafana sends to Prometheus for a panel: its step, ``$__interval``, variables.

Mirrors Grafana 10's Prometheus data source (public/app/plugins/datasource/prometheus:
``createQuery``, ``adjustInterval``, ``getRateIntervalScopedVariable``,
``interpolateQueryExpr``; ``rangeUtil.calculateInterval``/``roundInterval``) closely
enough that a query run here is the query a dashboard viewer's browser runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The data source's "Scrape interval" default: the lower limit of $__interval.
DATASOURCE_SCRAPE_SECONDS = 15
# Prometheus refuses more than 11000 points per series; Grafana widens the step to fit.
MAX_POINTS = 11_000
# A panel is as many data points wide as pixels; a 24-unit row is about 1800 px wide.
ROW_PIXELS = 1800
ALL = "$__all"

_ROUND_STEPS_MS = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
    (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
    (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
    (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
)  # fmt: skip
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def round_interval(ms: float) -> float:
    """Grafana's rangeUtil.roundInterval: a "nice" interval near ``ms``."""
    for below, nice in _ROUND_STEPS_MS:
        if ms < below:
            return nice
    return 604800000


def seconds(duration: str) -> float:
    """A Grafana/Prometheus duration ("15s", "1m", "1m15s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * _UNITS[u] for n, u in parts)


def duration(secs: float) -> str:
    whole = int(secs)
    assert whole == secs, secs
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


@dataclass(frozen=True)
class Query:
    """One target as Prometheus receives it."""

    ref: str
    expr: str
    instant: bool
    start: int
    end: int
    step: int
    interval: int  # the $__interval it was built with
    rate_interval: int
    format: str
    legend: str


def panel_interval(panel: dict[str, Any], start: int, end: int) -> int:
    """$__interval of a panel: range / its width in points, rounded, at least the min."""
    points = panel.get("maxDataPoints") or round(panel["gridPos"]["w"] / 24 * ROW_PIXELS)
    calculated = round_interval((end - start) * 1000 / points) / 1000
    low = seconds(panel["interval"]) if panel.get("interval") else DATASOURCE_SCRAPE_SECONDS
    return math.ceil(max(calculated, low))


def build_query(
    target: dict[str, Any],
    interval: int,
    start: int,
    end: int,
    variables: dict[str, str],
) -> Query:
    """The query Grafana sends for ``target`` of a panel whose $__interval is ``interval``."""
    min_step = seconds(target["interval"]) if target.get("interval") else interval
    factor = target.get("intervalFactor", 1)
    step = math.ceil(max(interval * factor, min_step, 1, math.ceil((end - start) / MAX_POINTS)))
    scrape = min_step if target.get("interval") else DATASOURCE_SCRAPE_SECONDS
    rate_interval = max(step + scrape, 4 * scrape)
    builtins = {
        "$__rate_interval": duration(rate_interval),
        "$__interval": duration(step),
        "$__range": duration(end - start),
    }
    expr = target["expr"]
    for name in sorted(builtins, key=len, reverse=True):
        expr = expr.replace(name, builtins[name])
    expr = interpolate(expr, variables)
    instant = bool(target.get("instant")) and not target.get("range")
    # Grafana aligns a range query to its step so that refreshes hit the same timestamps.
    return Query(
        ref=target["refId"],
        expr=expr,
        instant=instant,
        start=start // step * step,
        end=end // step * step,
        step=step,
        interval=step,
        rate_interval=rate_interval,
        format=target.get("format", "time_series"),
        legend=target.get("legendFormat", ""),
    )


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a value inside a =~"..." matcher."""
    value = value.replace("\\", "\\" * 4)
    return re.sub(r"([$^*+?.()|\[\]{}'])", r"\\\\\1", value)


def format_variable(variable: dict[str, Any], selected: list[str], options: list[str]) -> str:
    """A multi-value/All variable's value inside a PromQL regex matcher."""
    if selected == [ALL]:
        if variable.get("allValue"):
            return str(variable["allValue"])
        selected = options
    escaped = [regex_escape(value) for value in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, variables: dict[str, str]) -> str:
    # Longest names first: $instance must not eat the start of a longer name.
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def parse_label_values(query: str) -> tuple[str, str]:
    """(series selector, label) of a ``label_values(selector, label)`` variable query."""
    match = _LABEL_VALUES.match(query.strip())
    assert match and match["selector"], f"not label_values(selector, label): {query}"
    return match["selector"], match["label"]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are only headings), collapsed rows' included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def heatmap_counts(series: dict[str, float]) -> dict[float, float]:
    """Grafana's "format: heatmap": cumulative ``le`` buckets to per-bucket counts."""
    bounds = sorted(series, key=float)
    counts: dict[float, float] = {}
    below = 0.0
    for le in bounds:
        counts[float(le)] = series[le] - below
        below = series[le]
    return counts


def annotation_step(annotation: dict[str, Any], start: int, end: int) -> int:
    """An annotation query's step and $__interval: its "step" (default 60s) or wider."""
    low = seconds(annotation.get("step") or "60s")
    calculated = round_interval((end - start) * 1000 / ROW_PIXELS) / 1000
    return math.ceil(max(low, calculated, math.ceil((end - start) / MAX_POINTS)))


def annotation_events(points: dict[int, float], step: float) -> list[tuple[int, int]]:
    """Grafana's processAnnotationResponse: (time, timeEnd) of each mark of one series.

    Points above 0 become marks; marks at most ``step`` apart merge into one region.
    """
    events: list[tuple[int, int]] = []
    for t in sorted(t for t, value in points.items() if value > 0):
        if events and events[-1][1] + step >= t:
            events[-1] = (events[-1][0], t)
        else:
            events.append((t, t))
    return events
