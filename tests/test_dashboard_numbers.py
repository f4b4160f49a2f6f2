"""Every dashboard panel shows the numbers of a known history, on a real Prometheus.

tests/support/dashboard_history.py writes two hours of two probes (vantages ``fra`` and
``nyc`` sharing one ``instance``) with drops, a restart, a crash, an RTT spike, a stall;
promtool backfills it into a Prometheus on loopback. For each panel and annotation the
test builds the query as Grafana would (tests/support/grafana.py: step, $__interval,
$__rate_interval, the variables as selected), runs it, and compares what the panel would
draw with what happened. Panels are enumerated from the JSON: a new panel without a
check here fails.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from t3probe.metrics import AGE_BUCKETS, CONNECT_BUCKETS, LAG_BUCKETS, RTT_BUCKETS
from tests.support import dashboard_history as h
from tests.support import grafana
from tests.support.ops_queries import dashboard
from tests.support.prom import HistoryPrometheus, prometheus_with_history

pytestmark = pytest.mark.e2e

Key = tuple[str, ...]
Points = dict[int, float]

# Variable selections a viewer makes. "All" everywhere but the job; then one vantage and
# one leg, which must hide the other vantage even though it shares `instance`.
EVERYTHING = {"job": ["t3probe"], "vantage": [grafana.ALL], "instance": [grafana.ALL],
              "leg": [grafana.ALL], "node": [grafana.ALL]}  # fmt: skip
ONE_PATH = {"job": [grafana.ALL], "vantage": ["fra"], "instance": [h.INSTANCE],
            "leg": ["internal"], "node": [grafana.ALL]}  # fmt: skip
SELECTIONS = {"everything": EVERYTHING, "fra-internal": ONE_PATH}


@dataclass
class View:
    """The dashboard as one viewer sees it: a time range and the variables' values."""

    prom: HistoryPrometheus
    origin: int  # absolute time of the history's start
    selection: dict[str, list[str]]
    options: dict[str, list[str]] = field(default_factory=dict)
    formatted: dict[str, str] = field(default_factory=dict)

    @property
    def start(self) -> int:
        return self.origin + h.RANGE_FROM

    @property
    def end(self) -> int:
        return self.origin + h.RANGE_TO

    def resolve_variables(self) -> None:
        """Run each variable's label_values query in order, as Grafana does on load."""
        for variable in dashboard()["templating"]["list"]:
            if variable["type"] != "query":
                continue
            selector, label = grafana.parse_label_values(variable["definition"])
            selector = grafana.interpolate(selector, self.formatted)
            series = self.prom.series(selector, self.start, self.end)
            values = sorted({s[label] for s in series if label in s})
            self.options[variable["name"]] = values
            chosen = self.selection[variable["name"]]
            self.formatted[variable["name"]] = grafana.format_variable(variable, chosen, values)

    def selected(self, name: str) -> set[str]:
        chosen = self.selection[name]
        return set(self.options[name]) if chosen == [grafana.ALL] else set(chosen)

    def paths(self) -> list[tuple[str, str]]:
        """(vantage, leg) pairs the selection shows."""
        return [
            (v, leg)
            for v, legs in h.LEGS.items()
            if v in self.selected("vantage")
            for leg in legs
            if leg in self.selected("leg")
        ]

    def query(self, panel: dict[str, Any], ref: str) -> tuple[grafana.Query, list[dict[str, Any]]]:
        target = next(t for t in panel["targets"] if t["refId"] == ref)
        interval = grafana.panel_interval(panel, self.start, self.end)
        query = grafana.build_query(target, interval, self.start, self.end, self.formatted)
        assert "$" not in query.expr, f"{panel['title']}: unsubstituted variable in {query.expr}"
        if query.instant:
            return query, self.prom.instant(query.expr, self.end)
        return query, self.prom.range(query.expr, query.start, query.end, query.step)

    def series(
        self, panel: dict[str, Any], ref: str, *labels: str
    ) -> tuple[grafana.Query, dict[Key, Points]]:
        """A range target's series keyed by ``labels``, times relative to the history."""
        query, result = self.query(panel, ref)
        assert not query.instant, f"{panel['title']} {ref} is not a range query"
        found: dict[Key, Points] = {}
        for series in result:
            key = tuple(series["metric"].get(label, "") for label in labels)
            assert key not in found, f"{panel['title']}: two series for {key}: grouping too coarse"
            found[key] = {int(t) - self.origin: float(v) for t, v in series["values"]}
        return query, found

    def vector(self, panel: dict[str, Any], ref: str, *labels: str) -> dict[Key, float]:
        query, result = self.query(panel, ref)
        assert query.instant, f"{panel['title']} {ref} is not an instant query"
        found: dict[Key, float] = {}
        for sample in result:
            key = tuple(sample["metric"].get(label, "") for label in labels)
            assert key not in found, f"{panel['title']}: two values for {key}"
            found[key] = float(sample["value"][1])
        return found


def steps(query: grafana.Query, origin: int) -> range:
    return range(query.start - origin, query.end - origin + 1, query.step)


# --- what happened, from the history's events -------------------------------------------


def last_scrape(vantage: str, t: int) -> int:
    """The scrape whose value Prometheus returns at ``t``.

    A real scrape failure writes staleness markers and the series vanish; a backfilled
    history cannot carry them, so Prometheus returns the last value for up to 5 minutes.
    """
    s = max(h.scrapes_between(-1, t))
    while h.dead(vantage, s):
        s -= h.SCRAPE
    assert t - s < 300
    return s


def scrapes_in(vantage: str, lo: int, hi: int) -> list[int]:
    """Scrape times in (lo, hi] at which the probe answered.

    No scrape falls on a step, so whether a range selector includes its start (it does
    up to Prometheus 2, not from 3) changes nothing here.
    """
    return [s for s in h.scrapes_between(lo, hi) if not h.dead(vantage, s)]


def recorded_between(
    observe: Callable[[int], list[float]], vantage: str, window: int, t: int
) -> list[float] | None:
    """What rate()/increase() over [window] at t sees: the observations recorded after
    the window's first sample up to its last one; None with fewer than two samples."""
    samples = scrapes_in(vantage, t - window, t)
    if len(samples) < 2:
        return None
    return [x for u in h.scrapes_between(samples[0], samples[-1]) for x in observe(u)]


def bounds_of(value: float, buckets: tuple[float, ...]) -> tuple[float, float]:
    upper = h.bucket_of(value, buckets)
    lower = max((b for b in buckets if b < upper), default=0.0)
    return lower, upper


def single_bucket_quantile(
    q: float, values: list[float], buckets: tuple[float, ...]
) -> float | None:
    """histogram_quantile of observations that all fall in one bucket, else None."""
    spans = {bounds_of(v, buckets) for v in values}
    if len(spans) != 1:
        return None
    lower, upper = spans.pop()
    return lower + (upper - lower) * q


def drops_between(vantage: str, leg: str, lo: int, hi: int) -> list[h.Drop]:
    return [d for d in h.DROPS if (d.vantage, d.leg) == (vantage, leg) and lo < d.at <= hi]


def is_nan(value: float | None) -> bool:
    return value is None or math.isnan(value)


# --- the checks, one per panel ------------------------------------------------------------


def check_current_verdict(view: View, panel: dict[str, Any]) -> None:
    values = view.vector(panel, "A", "vantage")
    names = value_texts(panel)
    shown = {key[0]: names[value] for key, value in values.items()}
    expected = {v: h.verdict(v, last_scrape(v, h.RANGE_TO)) for v in view.selected("vantage")}
    assert shown == expected
    if len(expected) > 1:
        assert len(set(expected.values())) > 1, "the vantages should disagree at the end"


def value_texts(panel: dict[str, Any]) -> dict[float, str]:
    """The panel's value mappings: what Grafana writes for a value."""
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    return {float(value): option["text"] for value, option in mapping["options"].items()}


def check_verdict_over_time(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage")
    names = value_texts(panel)
    assert {k[0] for k in found} == view.selected("vantage")
    for (vantage,), points in found.items():
        shown = {t: names[value] for t, value in points.items()}
        expected = {
            t: h.verdict(vantage, last_scrape(vantage, t)) for t in steps(query, view.origin)
        }
        assert shown == expected, vantage
    if "fra" in view.selected("vantage"):
        assert {"suspect", "probe_unhealthy", "infra_clean", "unknown"} <= set(
            names[v] for v in found["fra",].values()
        )


def check_suspected_segments(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "segment")
    expected_keys = {(v, s) for v in view.selected("vantage") for s in h.SEGMENTS[v]}
    assert set(found) == expected_keys
    for (vantage, segment), points in found.items():
        expected = {
            t: float(h.suspected(vantage, segment, last_scrape(vantage, t)))
            for t in steps(query, view.origin)
        }
        assert points == expected, (vantage, segment)


def check_degraded_segments(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "segment")
    assert set(found) == {(v, s) for v in view.selected("vantage") for s in h.SEGMENTS[v]}
    for (vantage, segment), points in found.items():
        expected = {
            t: float(h.degraded(vantage, segment, last_scrape(vantage, t)))
            for t in steps(query, view.origin)
        }
        assert points == expected, (vantage, segment)
    if "fra" in view.selected("vantage"):
        assert 1.0 in found["fra", "t3serve"].values(), "the RTT spike shows as slow"


def check_leg_state(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "instance", "leg")
    assert set(found) == {(v, h.INSTANCE, leg) for v, leg in view.paths()}
    for (vantage, _, leg), points in found.items():
        expected = {
            t: float(h.connected(vantage, leg, last_scrape(vantage, t)))
            for t in steps(query, view.origin)
        }
        assert points == expected, (vantage, leg)
        if drops_between(vantage, leg, h.RANGE_FROM, h.RANGE_TO):
            assert 0.0 in points.values(), (vantage, leg)


def check_since_last_drop(view: View, panel: dict[str, Any]) -> None:
    values = view.vector(panel, "A", "vantage", "leg")
    expected = {}
    for vantage, leg in view.paths():
        since_start = drops_between(vantage, leg, h.epoch_start(vantage, h.RANGE_TO), h.RANGE_TO)
        if since_start:
            expected[vantage, leg] = float(h.RANGE_TO - since_start[-1].died_at)
    assert values == expected
    assert expected, "the history must have a drop to show"


def check_rtt_percentiles(view: View, panel: dict[str, Any]) -> None:
    checked: dict[tuple[str, str], int] = defaultdict(int)
    spike_seen = False
    for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99)):
        query, found = view.series(panel, ref, "vantage", "leg")
        assert set(found) == set(view.paths())
        for (vantage, leg), points in found.items():
            for t in steps(query, view.origin):
                rtt = partial(h.rtt_observations, vantage, leg)
                observed = recorded_between(rtt, vantage, query.rate_interval, t)
                if not observed:
                    assert is_nan(points.get(t)), (vantage, leg, t)
                    continue
                expected = single_bucket_quantile(q, observed, RTT_BUCKETS)
                if expected is None:
                    continue  # a transition: several buckets, interpolated across them
                assert points[t] == pytest.approx(expected, rel=1e-9), (ref, vantage, leg, t)
                checked[vantage, leg] += 1
                spike_seen |= expected > 0.25
    assert set(checked) == set(view.paths())
    if ("fra", "t3serve") in view.paths():
        assert spike_seen, "the t3serve RTT spike must be read"


def check_rtt_heatmap(view: View, panel: dict[str, Any]) -> None:
    query, result = view.query(panel, "A")
    assert query.format == "heatmap"
    cumulative: dict[int, dict[str, float]] = defaultdict(dict)
    for series in result:
        for t, value in series["values"]:
            cumulative[int(t) - view.origin][series["metric"]["le"]] = float(value)
    total = 0
    for t in steps(query, view.origin):
        expected: dict[float, float] = dict.fromkeys((*RTT_BUCKETS, math.inf), 0.0)
        for vantage, leg in view.paths():
            for u in h.scrapes_between(t - query.interval, t):
                for rtt in h.rtt_observations(vantage, leg, u):
                    expected[h.bucket_of(rtt, RTT_BUCKETS)] += 1
        assert grafana.heatmap_counts(cumulative[t]) == expected, t
        total += int(sum(expected.values()))
    assert total > 500


def check_drops_by_reason(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "leg", "reason")
    bar = query.interval
    expected: dict[Key, Points] = defaultdict(dict)
    first, last = query.start - view.origin, query.end - view.origin
    for d in h.DROPS:
        if (d.vantage, d.leg) in view.paths() and first - bar < d.at <= last:
            t = math.ceil(d.at / bar) * bar  # the step whose bar (t - bar, t] holds it
            key = (d.vantage, d.leg, d.reason)
            expected[key][t] = expected[key].get(t, 0.0) + 1
    assert found == expected
    # The audit's case: the bars add up to the drops, not to three times as many.
    shown = sum(sum(points.values()) for points in found.values())
    happened = sum(len(drops_between(v, leg, first - bar, last)) for v, leg in view.paths())
    assert shown == happened >= 3


def check_drops_table(view: View, panel: dict[str, Any]) -> None:
    values = view.vector(panel, "A", "vantage", "leg", "reason")
    decimals = panel["fieldConfig"]["defaults"]["decimals"]
    shown = {key: round(value, decimals) for key, value in values.items()}
    expected: dict[Key, float] = defaultdict(float)
    for vantage, leg in view.paths():
        for d in drops_between(vantage, leg, h.RANGE_FROM, h.RANGE_TO):
            expected[vantage, leg, d.reason] += 1
    assert shown == expected


def check_connection_age(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "leg")
    checked = 0
    for vantage, leg in view.paths():
        points = found.get((vantage, leg), {})
        for t in steps(query, view.origin):
            samples = scrapes_in(vantage, t - 3600, t)
            ages = [d.age for d in drops_between(vantage, leg, samples[0], t)]
            if not ages:
                assert is_nan(points.get(t)), (vantage, leg, t)
                continue
            # increase() extrapolates each bucket a little differently: read the bucket
            # the median falls in, where the rank is clear of the bucket edges.
            counts = [sum(1 for a in ages if a <= b) for b in (*AGE_BUCKETS, math.inf)]
            rank = 0.5 * len(ages)
            i = next(i for i, c in enumerate(counts) if c >= rank)
            if counts[i] == rank or (i and counts[i - 1] >= rank - 0.5):
                continue
            lower = AGE_BUCKETS[i - 1] if i else 0.0
            assert lower < points[t] <= AGE_BUCKETS[i], (vantage, leg, t, ages)
            checked += 1
    assert checked > 20


def connects(vantage: str, leg: str, phase: str) -> Callable[[int], list[float]]:
    return lambda t: h.connect_observations(vantage, leg, t)[phase]


def check_connect_duration(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "leg", "phase")
    checked = 0
    for vantage, leg in view.paths():
        for phase, seconds in h.CONNECT_SECONDS.items():
            points = found.get((vantage, leg, phase), {})
            for t in steps(query, view.origin):
                samples = scrapes_in(vantage, t - query.rate_interval, t)
                if samples and h.epoch_start(vantage, samples[0]) != h.epoch_start(vantage, t):
                    # A counter restarting at 0 and counting back to its old value in one
                    # scrape looks unchanged to rate(): one connect per leg and restart.
                    continue
                observed = recorded_between(
                    connects(vantage, leg, phase), vantage, query.rate_interval, t
                )
                if not observed:
                    assert is_nan(points.get(t)), (vantage, leg, phase, t)
                    continue
                expected = single_bucket_quantile(0.9, [seconds], CONNECT_BUCKETS)
                assert points[t] == pytest.approx(expected, rel=1e-9), (vantage, leg, phase, t)
                checked += 1
    assert checked > 0


def check_dns_failures(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "leg", "reason")
    expected_keys = {(v, leg, r) for v, leg, r, _ in h.DNS_FAILURES if (v, leg) in view.paths()}
    assert set(found) == expected_keys
    checked = 0
    for vantage, leg, reason, (begin, _) in h.DNS_FAILURES:
        if (vantage, leg) not in view.paths():
            continue
        points = found[vantage, leg, reason]
        for t in steps(query, view.origin):
            samples = scrapes_in(vantage, t - query.rate_interval, t)
            failures = [h.dns_failures(vantage, leg, reason, u) for u in samples[1:]]
            if not any(failures):
                assert t not in points, t  # no failure in the window: `> 0` hides it
            elif all(failures) and samples[0] > begin + 2 * h.SCRAPE:
                # One failure per scrape, and the counter well above 0 (rate()'s
                # extrapolation stops at the counter's zero point).
                assert points[t] == pytest.approx(1 / h.SCRAPE, rel=1e-9), t
                checked += 1
    assert checked > 10 or not expected_keys


def check_availability(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "instance", "leg")
    assert set(found) == {(v, h.INSTANCE, leg) for v, leg in view.paths()}
    for (vantage, _, leg), points in found.items():
        for t in steps(query, view.origin):
            up = [h.connected(vantage, leg, s) for s in scrapes_in(vantage, t - 900, t)]
            assert points[t] == pytest.approx(sum(up) / len(up), rel=1e-12), (vantage, leg, t)
        assert min(points.values()) < 1 or not drops_between(
            vantage, leg, h.RANGE_FROM - 900, h.RANGE_TO
        )


def check_loop_lag(view: View, panel: dict[str, Any]) -> None:
    for ref, q in (("A", 0.99), ("B", 0.5)):
        query, found = view.series(panel, ref, "vantage", "instance")
        assert set(found) == {(v, h.INSTANCE) for v in view.selected("vantage")}
        seen: set[float] = set()
        for (vantage, _), points in found.items():
            for t in steps(query, view.origin):
                lag = partial(h.lag_observations, vantage)
                observed = recorded_between(lag, vantage, query.rate_interval, t)
                expected = single_bucket_quantile(q, observed or [], LAG_BUCKETS)
                if observed and expected is not None:
                    assert points[t] == pytest.approx(expected, rel=1e-9), (ref, vantage, t)
                    seen.add(round(expected, 9))
        if "fra" in view.selected("vantage"):
            assert len(seen) == 2, "both the normal lag and the stall must be read"


def check_scrape_up(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "instance")
    assert set(found) == {(v, h.INSTANCE) for v in view.selected("vantage")}
    for (vantage, _), points in found.items():
        expected = {
            t: float(not h.dead(vantage, max(h.scrapes_between(-1, t))))
            for t in steps(query, view.origin)
        }
        assert points == expected, vantage
    if "nyc" in view.selected("vantage"):
        assert 0.0 in found["nyc", h.INSTANCE].values()


def check_probe_and_legs(view: View, panel: dict[str, Any]) -> None:
    builds = view.vector(panel, "A", "vantage", "instance", "version")
    assert builds == {(v, h.INSTANCE, h.VERSION): 1.0 for v in view.selected("vantage")}
    legs = view.vector(panel, "B", "vantage", "leg", "kind")
    assert legs == {(v, leg, h.LEG_KIND[leg]): 1.0 for v, leg in view.paths()}


def check_host_rate(view: View, panel: dict[str, Any], ref: str, metrics: list[str]) -> int:
    query, found = view.series(panel, ref, "instance")
    assert set(found) == {(h.NODE,)}
    points = found[h.NODE,]
    checked = 0
    for t in steps(query, view.origin):
        window = h.scrapes_between(t - query.rate_interval, t)
        rates = {sum(h.host_rate(m, u) for m in metrics) for u in window[1:]}
        if len(rates) == 1:
            assert points[t] == pytest.approx(rates.pop(), rel=1e-9, abs=1e-12), (ref, t)
            checked += 1
    return checked


def check_host_pressure(view: View, panel: dict[str, Any]) -> None:
    for target in panel["targets"]:
        metric = next(m for m in h.HOST_RATES if m in target["expr"])
        assert check_host_rate(view, panel, target["refId"], [metric]) > 100


def check_t3serve_vs_swapping(view: View, panel: dict[str, Any]) -> None:
    query, found = view.series(panel, "A", "vantage", "instance")
    # The panel is about the t3serve leg whatever $leg says.
    if "fra" not in view.selected("vantage"):
        assert not found
    else:
        assert set(found) == {("fra", h.INSTANCE)}
        levels = set()
        for t in steps(query, view.origin):
            rtt = partial(h.rtt_observations, "fra", "t3serve")
            observed = recorded_between(rtt, "fra", 300, t)
            expected = single_bucket_quantile(0.99, observed or [], RTT_BUCKETS)
            if observed and expected is not None:
                assert found["fra", h.INSTANCE][t] == pytest.approx(expected, rel=1e-9), t
                levels.add(round(expected, 9))
        assert len(levels) == 2, "the normal RTT and the spike must both be read"
    swapping = ["node_vmstat_pswpin", "node_vmstat_pswpout"]
    assert check_host_rate(view, panel, "B", swapping) > 100


PANEL_CHECKS: dict[str, Callable[[View, dict[str, Any]], None]] = {
    "Current verdict": check_current_verdict,
    "Verdict over time": check_verdict_over_time,
    "Suspected segments": check_suspected_segments,
    "Degraded segments": check_degraded_segments,
    "Leg state": check_leg_state,
    "Since last drop": check_since_last_drop,
    "Heartbeat RTT percentiles": check_rtt_percentiles,
    "Heartbeat RTT heatmap": check_rtt_heatmap,
    "Drops by reason": check_drops_by_reason,
    "Drops in the selected range": check_drops_table,
    "Connection age at death (median, 1h)": check_connection_age,
    "Connect duration p90 by phase": check_connect_duration,
    "DNS failures": check_dns_failures,
    "Leg availability (15m)": check_availability,
    "Event loop lag": check_loop_lag,
    "Scrape up": check_scrape_up,
    "Probe and legs": check_probe_and_legs,
    "Backend host pressure stall": check_host_pressure,
    "t3serve RTT vs. swapping": check_t3serve_vs_swapping,
}


def check_drop_annotation(view: View, annotation: dict[str, Any]) -> None:
    step = grafana.annotation_step(annotation, view.start, view.end)
    target = {"refId": "X", "expr": annotation["expr"], "interval": f"{step}s", "range": True}
    query = grafana.build_query(target, step, view.start, view.end, view.formatted)
    result = view.prom.range(query.expr, query.start, query.end, query.step)
    marks: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for series in result:
        key = (series["metric"]["vantage"], series["metric"]["leg"])
        points = {int(t) - view.origin: float(v) for t, v in series["values"]}
        marks[key] = grafana.annotation_events(points, grafana.seconds(annotation["step"]))
    first, last = query.start - view.origin, query.end - view.origin
    expected: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for vantage, leg in view.paths():
        bars = {
            math.ceil(d.at / step) * step for d in drops_between(vantage, leg, first - step, last)
        }
        if bars:
            points = dict.fromkeys(bars, 1.0)
            expected[vantage, leg] = grafana.annotation_events(
                points, grafana.seconds(annotation["step"])
            )
    assert marks == expected
    # Every drop in the range lies under a mark, each mark covers a drop.
    for (vantage, leg), events in marks.items():
        for d in drops_between(vantage, leg, first, last):
            assert any(begin - step < d.at <= end for begin, end in events), d
    assert sum(len(e) for e in marks.values()) >= 3


ANNOTATION_CHECKS: dict[str, Callable[[View, dict[str, Any]], None]] = {
    "Leg drops": check_drop_annotation,
}


# --- the tests ------------------------------------------------------------------------------


@dataclass
class Served:
    prom: HistoryPrometheus
    origin: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # Whole hours in the recent past: inside the default retention, aligned like a scrape.
    origin = (int(time.time()) // 3600 - 3) * 3600
    root: Path = tmp_path_factory.mktemp("dashboard-history")
    with prometheus_with_history(h.openmetrics(origin), root) as prom:
        yield Served(prom, origin)


def view_of(served: Served, selection: str) -> View:
    view = View(served.prom, served.origin, SELECTIONS[selection])
    view.resolve_variables()
    return view


def test_variables_list_what_the_history_holds(served: Served) -> None:
    view = view_of(served, "everything")
    assert view.options == {
        "job": [h.JOB],
        "vantage": sorted(h.LEGS),
        "instance": [h.INSTANCE],
        "leg": sorted({leg for legs in h.LEGS.values() for leg in legs}),
        "node": [h.NODE],
    }
    narrowed = view_of(served, "fra-internal")
    assert narrowed.options["leg"] == sorted(h.LEGS["fra"])
    assert narrowed.formatted["vantage"] == "fra"
    assert narrowed.formatted["instance"] == grafana.regex_escape(h.INSTANCE)


PANEL_TITLES = [panel["title"] for panel in grafana.panels(dashboard())]
ANNOTATION_NAMES = [
    a["name"]
    for a in dashboard()["annotations"]["list"]
    if a.get("datasource", {}).get("type") == "prometheus"
]


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize("title", PANEL_TITLES)
def test_panel_shows_the_history(served: Served, title: str, selection: str) -> None:
    check = PANEL_CHECKS.get(title)
    assert check is not None, f"panel {title!r} has no check against the injected history"
    panel = next(p for p in grafana.panels(dashboard()) if p["title"] == title)
    check(view_of(served, selection), panel)


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize("name", ANNOTATION_NAMES)
def test_annotation_marks_the_history(served: Served, name: str, selection: str) -> None:
    check = ANNOTATION_CHECKS.get(name)
    assert check is not None, f"annotation {name!r} has no check against the injected history"
    annotation = next(a for a in dashboard()["annotations"]["list"] if a["name"] == name)
    check(view_of(served, selection), annotation)


def test_every_panel_and_annotation_is_checked() -> None:
    assert set(PANEL_TITLES) == set(PANEL_CHECKS), "a panel was added, removed or renamed"
    assert set(ANNOTATION_NAMES) == set(ANNOTATION_CHECKS)
    assert len(PANEL_TITLES) == len(set(PANEL_TITLES)), "panel titles must be unique"
