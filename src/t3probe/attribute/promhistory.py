"""Each leg's ups and downs from Prometheus' raw samples, for the replayed verdict. Pure.

``t3probe_connected`` says up or down per scrape; a down between two scrapes is placed
at ``t3probe_last_disconnect_timestamp_seconds`` (the exact time of the latest drop) and
given the reason whose ``t3probe_disconnects_total`` rose meanwhile. A drop and a
reconnect between two scrapes (the counter rose, the gauge stayed 1) is a down and an up.
An up is placed at the scrape that first saw it: Prometheus knows no better.

``t3probe_leg_degraded`` is 1 while a leg is slow: a slow span runs from the scrape that
first saw 1 to the scrape that saw 0, or to the drop that ended it (the probe resets the
gauge when a leg drops).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from t3probe.attribute.model import Window
from t3probe.attribute.promql import LegKey, Series, coverage_gaps
from t3probe.attribute.timeline import Change, LegHistory, slow_spans
from t3probe.reasons import Reason


def _key(labels: Mapping[str, str]) -> LegKey:
    return labels.get("instance", ""), labels.get("leg", "")


def histories(
    connected: Sequence[Series],
    counters: Sequence[Series],
    drop_times: Sequence[Series],
    start: float,
    end: float,
    interval: float | None,
    segments: Mapping[str, tuple[str, ...]],
    degraded: Sequence[Series] = (),
) -> tuple[LegHistory, ...]:
    by_leg: dict[LegKey, list[tuple[float, float]]] = {}
    for one in connected:
        by_leg.setdefault(_key(one.labels), []).extend(one.samples)
    instances = {instance for instance, _ in by_leg}
    reasons: dict[LegKey, list[tuple[Reason, tuple[tuple[float, float], ...]]]] = {}
    for one in counters:
        try:
            reason = Reason(one.labels.get("reason", ""))
        except ValueError:
            reason = Reason.INTERNAL_ERROR
        reasons.setdefault(_key(one.labels), []).append((reason, one.samples))
    stamps: dict[LegKey, list[tuple[float, float]]] = {}
    for one in drop_times:
        stamps.setdefault(_key(one.labels), []).extend(one.samples)
    slow: dict[LegKey, list[tuple[float, bool]]] = {}
    for one in degraded:
        slow.setdefault(_key(one.labels), []).extend((at, v == 1) for at, v in one.samples)
    result = []
    span = Window(start, start, end, end)
    for key in sorted(by_leg):
        samples = sorted(by_leg[key])
        name = key[1] if len(instances) <= 1 else f"{key[1]}@{key[0]}"
        gaps = coverage_gaps([at for at, _ in samples], span, interval)
        # The leading and trailing "gaps" are before the first or after the last data.
        inner = tuple(gap for gap in gaps if gap[0] > start and gap[1] < end)
        tail = [gap for gap in gaps if gap[1] >= end and gap[0] > start]
        changes = _changes(samples, reasons.get(key, []), sorted(stamps.get(key, [])))
        downs = [change.at for change in changes if not change.up]
        result.append(
            LegHistory(
                name,
                segments.get(key[1], ()),
                samples[0][0] if samples else None,
                (samples[0][1] == 1) if samples else None,
                None,
                changes,
                inner,
                last_data=tail[0][0] if tail else None,
                slow=slow_spans(sorted(slow.get(key, [])), downs, end),
            )
        )
    return tuple(result)


def _changes(
    samples: list[tuple[float, float]],
    reasons: list[tuple[Reason, tuple[tuple[float, float], ...]]],
    stamps: list[tuple[float, float]],
) -> tuple[Change, ...]:
    changes = []
    for (a, before), (b, after) in itertools.pairwise(samples):
        rose = _reason_between(reasons, a, b)
        if before == 1 and after == 0:
            changes.append(Change(_drop_time(stamps, a, b), False, rose))
        elif before == 0 and after == 1:
            changes.append(Change(b, True))
        elif before == 1 and after == 1 and rose is not None:
            changes.append(Change(_drop_time(stamps, a, b), False, rose))
            changes.append(Change(b, True))
    return tuple(changes)


def _value_at(samples: Sequence[tuple[float, float]], at: float) -> float | None:
    value = None
    for when, sample in samples:
        if when > at:
            break
        value = sample
    return value


def _reason_between(
    reasons: list[tuple[Reason, tuple[tuple[float, float], ...]]], a: float, b: float
) -> Reason | None:
    for reason, samples in reasons:
        before, after = _value_at(samples, a), _value_at(samples, b)
        if after is not None and (before is None or after > before):
            if before is None and after == 0:
                continue
            return reason
    return None


def _drop_time(stamps: list[tuple[float, float]], a: float, b: float) -> float:
    value = _value_at(stamps, b)
    return value if value is not None and a - 1.0 <= value <= b else b
