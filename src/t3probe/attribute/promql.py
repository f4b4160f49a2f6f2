"""The PromQL asked for a window, and turning Prometheus' answers into evidence. Pure.

Connection state and drop times are read as raw samples (a range selector through an
instant query), not through ``query_range``: a range query fills every step with the
last sample up to 5 minutes old (the lookback delta), which would paper over exactly the
gaps that mean "not scraped, cannot exonerate". Drop counts, RTT percentiles and the
probe's own convictions are aggregated by Prometheus.

Prometheus localises a drop only to a scrape interval. The drop counts therefore reach
back one scrape interval before the window (a drop just before it is counted rather
than one just inside missed), and the drop times come from
``t3probe_last_disconnect_timestamp_seconds``, which holds the exact time of the last
drop per scrape.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from t3probe.attribute.model import (
    Drop,
    Evidence,
    LegEvidence,
    Percentiles,
    SourceError,
    Window,
)
from t3probe.attribution import LinkState
from t3probe.reasons import Reason

Labels = Mapping[str, str]
LegKey = tuple[str, str]  # (instance, leg)
QUANTILES = (0.5, 0.99)


@dataclass(frozen=True)
class Series:
    labels: Labels
    samples: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


def duration(seconds: float) -> str:
    """A PromQL duration; milliseconds keep short test windows exact."""
    return f"{max(1, round(seconds * 1000))}ms"


def connected_query(window: Window) -> str:
    return f"t3probe_connected[{duration(window.seconds)}]"


def drops_query(window: Window, reach_back: float) -> str:
    # max - min counts whole drops without increase()'s extrapolation; only across a
    # probe restart (a counter reset) does increase() have to step in.
    span = duration(window.seconds + reach_back)
    counter = f"t3probe_disconnects_total[{span}]"
    return (
        "sum by (instance, leg, reason) ("
        f"((max_over_time({counter}) - min_over_time({counter}))"
        f" unless (resets({counter}) > 0))"
        f" or increase({counter})"
        ") > 0"
    )


def restarts_query(window: Window, reach_back: float) -> str:
    return (
        "sum by (instance) (resets("
        f"t3probe_disconnects_total[{duration(window.seconds + reach_back)}])) > 0"
    )


def drop_times_query(window: Window, reach_back: float) -> str:
    return f"t3probe_last_disconnect_timestamp_seconds[{duration(window.seconds + reach_back)}]"


def rtt_query(window: Window, quantile: float) -> str:
    """Evaluated at the window's end for "during", at its start for "before"."""
    return (
        f"histogram_quantile({quantile:g}, sum by (instance, leg, le) ("
        f"increase(t3probe_rtt_seconds_bucket[{duration(window.seconds)}])))"
    )


def suspects_query(window: Window) -> str:
    return (
        "max by (instance, segment) ("
        f"max_over_time(t3probe_segment_suspected[{duration(window.seconds)}])) == 1"
    )


PRESENCE_QUERY = "count(t3probe_connected)"


def parse_vector(data: Any) -> list[Sample]:
    result = _result(data, "vector")
    try:
        return [Sample(_labels(item["metric"]), _number(item["value"][1])) for item in result]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise SourceError(f"malformed vector in Prometheus' answer: {err!r}") from None


def parse_matrix(data: Any) -> list[Series]:
    result = _result(data, "matrix")
    try:
        return [
            Series(
                _labels(item["metric"]),
                tuple((float(at), _number(value)) for at, value in item["values"]),
            )
            for item in result
        ]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise SourceError(f"malformed matrix in Prometheus' answer: {err!r}") from None


def _result(data: Any, kind: str) -> list[Any]:
    if not isinstance(data, dict) or data.get("resultType") != kind:
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise SourceError(f"Prometheus answered with {got!r} where a {kind} was expected")
    result = data.get("result")
    if not isinstance(result, list):
        raise SourceError("Prometheus' answer has no result list")
    return result


def _labels(metric: Any) -> dict[str, str]:
    if not isinstance(metric, dict):
        raise TypeError("metric labels are not an object")
    return {str(key): str(value) for key, value in metric.items()}


def _number(text: Any) -> float:
    return float(str(text))  # Prometheus sends "NaN", "+Inf" as strings too


def scrape_interval(series: Sequence[Series]) -> float | None:
    """The typical spacing of samples, or None with fewer than two in any series."""
    deltas = [
        later[0] - earlier[0]
        for one in series
        for earlier, later in itertools.pairwise(one.samples)
    ]
    return statistics.median(deltas) if deltas else None


def coverage_gaps(
    times: Sequence[float], window: Window, interval: float | None
) -> tuple[tuple[float, float], ...]:
    """Stretches of the window no sample vouches for."""
    if not times:
        return ((window.start, window.end),)
    if interval is None:
        return ()
    # Two missed scrapes (plus jitter) make a gap; one late scrape does not.
    slack = 2 * interval + 0.5
    edges = [window.start, *times, window.end]
    return tuple((a, b) for a, b in itertools.pairwise(edges) if b - a > slack)


@dataclass(frozen=True)
class PrometheusAnswers:
    connected: list[Series]
    drops: list[Sample]
    drop_times: list[Series]
    restarts: list[Sample]
    rtt_before: dict[float, list[Sample]]
    rtt_during: dict[float, list[Sample]]
    suspects: list[Sample]
    warnings: tuple[str, ...] = ()
    # count(t3probe_connected) now; only asked when the window held no sample.
    present_now: int | None = None


def _key(labels: Labels) -> LegKey:
    return labels.get("instance", ""), labels.get("leg", "")


def evidence(url: str, window: Window, answers: PrometheusAnswers) -> Evidence:
    interval = scrape_interval(answers.connected)
    connected: dict[LegKey, list[tuple[float, float]]] = {}
    for one in answers.connected:
        connected.setdefault(_key(one.labels), []).extend(one.samples)
    instances = sorted({instance for instance, _ in connected})

    def name(key: LegKey) -> str:
        return key[1] if len(instances) <= 1 else f"{key[1]}@{key[0]}"

    counts = _drop_counts(answers.drops)
    times = _drop_times(answers.drop_times, window)
    before = _percentiles(answers.rtt_before)
    during = _percentiles(answers.rtt_during)
    legs = []
    for key in sorted(connected, key=lambda k: (k[0], k[1])):
        samples = sorted(connected[key])
        legs.append(
            _leg(
                name(key),
                samples,
                window,
                interval,
                counts.get(key, ()),
                times.get(key, ()),
                before.get(key),
                during.get(key),
            )
        )
    suspects = tuple(
        sorted(
            {
                s.labels.get("segment", "")
                if len(instances) <= 1
                else f"{s.labels.get('segment', '')}@{s.labels.get('instance', '')}"
                for s in answers.suspects
            }
        )
    )
    return Evidence(
        "prometheus",
        url,
        window,
        tuple(legs),
        probe_suspects=suspects,
        notes=_notes(window, answers, interval, legs),
    )


def _leg(
    name: str,
    samples: list[tuple[float, float]],
    window: Window,
    interval: float | None,
    counts: tuple[tuple[Reason, int], ...],
    times: tuple[float, ...],
    before: Percentiles | None,
    during: Percentiles | None,
) -> LegEvidence:
    gaps = coverage_gaps([at for at, _ in samples], window, interval)
    ever_down = any(value == 0 for _, value in samples)
    state: LinkState
    if not samples:
        state = "unknown"
    elif ever_down:
        state = "down"
    else:
        state = "unknown" if gaps else "up"
    return LegEvidence(
        name,
        observed=bool(samples),
        connected_throughout=None if gaps else not ever_down,
        state=state,
        drop_counts=counts,
        drops=tuple(Drop(None, at=at) for at in times),
        rtt_before=before,
        rtt_during=during,
        gaps=gaps,
    )


def _drop_counts(samples: list[Sample]) -> dict[LegKey, tuple[tuple[Reason, int], ...]]:
    counts: dict[LegKey, dict[Reason, int]] = {}
    for sample in samples:
        try:
            reason = Reason(sample.labels.get("reason", ""))
        except ValueError:
            reason = Reason.INTERNAL_ERROR  # a label from a newer probe: still a drop
        if not math.isfinite(sample.value) or sample.value <= 0:
            continue
        # increase() extrapolates across a restart: 0.6 is still a drop.
        per_leg = counts.setdefault(_key(sample.labels), {})
        per_leg[reason] = per_leg.get(reason, 0) + max(1, round(sample.value))
    return {key: tuple(sorted(per.items())) for key, per in counts.items()}


def _drop_times(series: list[Series], window: Window) -> dict[LegKey, tuple[float, ...]]:
    times: dict[LegKey, set[float]] = {}
    for one in series:
        seen = times.setdefault(_key(one.labels), set())
        seen.update(v for _, v in one.samples if window.start <= v <= window.end)
    return {key: tuple(sorted(values)) for key, values in times.items()}


def _percentiles(by_quantile: dict[float, list[Sample]]) -> dict[LegKey, Percentiles]:
    values: dict[LegKey, dict[float, float]] = {}
    for quantile, samples in by_quantile.items():
        for sample in samples:
            if not math.isnan(sample.value):
                values.setdefault(_key(sample.labels), {})[quantile] = sample.value
    return {key: Percentiles(q.get(0.5), q.get(0.99)) for key, q in values.items()}


def _notes(
    window: Window,
    answers: PrometheusAnswers,
    interval: float | None,
    legs: list[LegEvidence],
) -> tuple[str, ...]:
    notes = [f"Prometheus warning: {warning}" for warning in answers.warnings]
    if window.clipped:
        notes.append("the window was cut at now: the rest lies in the future")
    if legs and interval is None:
        notes.append("one sample per leg in the window: gaps cannot be detected; widen --window")
    for sample in answers.restarts:
        instance = sample.labels.get("instance", "?")
        notes.append(f"the probe at {instance} restarted in the window: drop counts approximate")
    if not legs and answers.present_now is not None:
        if answers.present_now > 0:
            notes.append(
                "Prometheus has t3probe series now, but none in the window:"
                " the probe was not running or not scraped then"
            )
        else:
            notes.append(
                "Prometheus has no t3probe_connected series at all:"
                " is the probe scraped by this Prometheus?"
            )
    return tuple(notes)
