"""Running the evidence queries of each suspect segment over an incident, in Prometheus.

A query fired when its value exceeded the threshold at some step of the range; it is
"not available" when the series it needs do not exist in Prometheus at all (no
node_exporter, no kube-state-metrics) — never "clean" for lack of data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from t3probe.attribute import promql
from t3probe.attribute.http import session
from t3probe.attribute.mechanisms import Definition, for_segment
from t3probe.attribute.prometheus import PrometheusAPI
from t3probe.attribute.timeline import Incident

Status = Literal["fired", "quiet", "not_available"]
# A cause shows before the drop it causes (a host thrashes, then connections time out).
LOOK_BEFORE_SECONDS = 120.0
# …and a stall outlasts the drops it causes: see where it ended.
LOOK_AFTER_SECONDS = 120.0
MAX_POINTS = 240  # per query: a readable span, and bounded work for Prometheus


@dataclass(frozen=True)
class Check:
    definition: Definition
    segment: str
    status: Status
    start: float | None = None
    end: float | None = None
    peak: float | None = None
    # The labels of the series that peaked (which pod, which host).
    where: str = ""
    # Still firing at the end of the range looked at: ``end`` is not where it stopped.
    open_ended: bool = False

    def describe(self) -> str:
        d = self.definition
        if self.status == "not_available":
            return f"{d.name}: not available (no {d.requires} series in Prometheus)"
        if self.status == "quiet":
            return f"{d.name}: did not fire"
        peak = self.peak or 0.0
        # increase() extrapolates: 1.02 restarts are one.
        amount = (
            f" {peak * 100:.0f} % of wall time" if d.unit == "ratio" else f": {max(1, round(peak))}"
        )
        return f"{d.says}{amount}{f' ({self.where})' if self.where else ''}"


def span(incident: Incident) -> tuple[float, float]:
    return incident.start - LOOK_BEFORE_SECONDS, incident.end + LOOK_AFTER_SECONDS


async def check(
    base: str, definitions: Sequence[Definition], incident: Incident, step: float
) -> tuple[Check, ...]:
    wanted = [(s, d) for s in incident.suspects for d in for_segment(definitions, s)]
    if not wanted:
        return ()
    start, end = span(incident)
    step = max(step, (end - start) / MAX_POINTS, 1.0)
    async with session() as client:
        api = PrometheusAPI(client, base)
        answers = await asyncio.gather(
            *(_one(api, segment, d, start, end, step) for segment, d in wanted)
        )
    return tuple(answers)


async def _one(
    api: PrometheusAPI, segment: str, d: Definition, start: float, end: float, step: float
) -> Check:
    present, _ = await api.query(
        f"count(last_over_time({d.requires}[{promql.duration(end - start)}]))", end
    )
    if not promql.parse_vector(present):
        return Check(d, segment, "not_available")
    data, _ = await api.query_range(d.query, start, end, step)
    fired = [
        (at, value, one.labels)
        for one in promql.parse_matrix(data)
        for at, value in one.samples
        if value > d.threshold
    ]
    if not fired:
        return Check(d, segment, "quiet")
    times = [at for at, _, _ in fired]
    _, peak, labels = max(fired, key=lambda item: item[1])
    where = ", ".join(
        f"{k}={v}" for k, v in labels.items() if k in ("instance", "namespace", "pod", "container")
    )
    last = max(times)
    return Check(d, segment, "fired", min(times), last, peak, where, last >= end - step)
