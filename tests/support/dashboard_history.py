"""A known two-hour history of two probes, as Prometheus would have scraped it.

Two vantages (``fra`` with three legs, ``nyc`` with one) share ``instance`` and
``job``, as in docs/scaling.md: only ``vantage`` tells them apart. The history has drops
(two in one minute), a probe restart right after a scrape at a minute boundary (its
counters restart at 0), a crashed probe that is not scraped for two minutes, an RTT
spike, an event-loop stall, DNS failures and a swapping backend host. Times are seconds
from the start of the history (a whole hour). Scrapes run every 15 s, 7 s into each
interval as a real scrape is offset from Grafana's step-aligned query times; every event
is recorded at a scrape.

``samples()`` renders it to series; the rest answers "what happened" for the test,
from the events, never from Prometheus.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from t3probe.metrics import AGE_BUCKETS, CONNECT_BUCKETS, LAG_BUCKETS, RTT_BUCKETS
from t3probe.reasons import CONNECT_PHASES

SCRAPE = 15
SCRAPE_OFFSET = 7
DURATION = 120 * 60
# The dashboard's time range in the test.
RANGE_FROM = 30 * 60
RANGE_TO = DURATION

JOB = "t3probe"
INSTANCE = "127.0.0.1:9108"
NODE = "10.0.10.10:9100"
VERSION = "1.2.3"
LEGS = {"fra": ("cloudflare", "internal", "t3serve"), "nyc": ("cloudflare",)}
LEG_KIND = {"cloudflare": "websocket", "internal": "websocket", "t3serve": "websocket"}
# The segment each leg's failure convicts, per vantage (what the probe would say).
CONVICTS = {
    ("fra", "cloudflare"): "cf_tunnel",
    ("fra", "internal"): "traefik",
    ("fra", "t3serve"): "t3serve",
    ("nyc", "cloudflare"): "wan",
}
SEGMENTS = {"fra": ("cf_tunnel", "traefik", "t3serve"), "nyc": ("wan",)}
VERDICT_NAMES = (
    "infra_clean",
    "suspect",
    "degraded",
    "inconclusive",
    "probe_unhealthy",
    "unknown",
)
REASONS = ("reset", "rtt_timeout", "closed_by_peer", "probe_stall")
DNS_REASONS = ("timeout", "servfail")
HEARTBEATS_PER_SCRAPE = 3
LAG_SAMPLES_PER_SCRAPE = 15
SCRAPE_OFFSET = 7
CONNECT_SECONDS = {"dns": 0.002, "tcp": 0.008, "tls": 0.012, "upgrade": 0.03}


@dataclass(frozen=True)
class Drop:
    vantage: str
    leg: str
    at: int  # the scrape that first shows it
    reason: str
    down_for: int
    age: float

    @property
    def died_at(self) -> int:
        """What t3probe_last_disconnect_timestamp_seconds records: before the scrape."""
        return self.at - 3


def _m(minutes: float) -> int:
    return round(minutes * 60)


def _scrape(minutes: float) -> int:
    """The first scrape at or after ``minutes``."""
    return _m(minutes) + SCRAPE_OFFSET


DROPS = (
    Drop("fra", "cloudflare", _scrape(20), "reset", 60, 1200.0),  # before the range
    Drop("fra", "internal", _scrape(45), "reset", 120, 1800.0),
    Drop("fra", "internal", _scrape(60), "reset", 120, 780.0),
    Drop("nyc", "cloudflare", _scrape(65), "rtt_timeout", 180, 3900.0),
    Drop("fra", "internal", _scrape(75), "rtt_timeout", 120, 780.0),
    Drop("fra", "internal", _scrape(100), "reset", 180, 585.0),
    # Two drops in one minute: one bar of 2.
    Drop("fra", "t3serve", _scrape(110.25), "closed_by_peer", 15, 1200.0),
    Drop("fra", "t3serve", _scrape(110.75), "closed_by_peer", 15, 30.0),
    # Still down at the end: the two vantages' current verdicts differ.
    Drop("nyc", "cloudflare", _scrape(118), "reset", 600, 675.0),
)
# (dies after the scrape at, restarts at): scrapes in between fail; counters restart at 0.
RESTARTS = {"fra": (_m(90), _m(90)), "nyc": (_m(104.75), _m(106.75))}
RTT_NORMAL = {
    ("fra", "cloudflare"): 0.02,
    ("fra", "internal"): 0.004,
    ("fra", "t3serve"): 0.008,
    ("nyc", "cloudflare"): 0.07,
}
# (vantage, leg): ((from, to], RTT) for observations recorded in that window.
RTT_SPIKE = {("fra", "t3serve"): ((_m(80), _m(85)), 0.3)}
LAG_NORMAL = 0.002
LAG_SPIKE = {"fra": ((_m(50), _m(53)), 0.7)}
# (vantage, leg, reason, (from, to]): one resolver failure per scrape.
DNS_FAILURES = (("fra", "cloudflare", "timeout", (_m(35), _m(55))),)
# Backend host counters: per-second rates, normal and during (from, to].
HOST_SPIKE = (_m(80), _m(85))
HOST_RATES = {
    "node_pressure_memory_stalled_seconds_total": (0.0625, 0.25),
    "node_pressure_memory_waiting_seconds_total": (0.0, 0.125),
    "node_pressure_cpu_waiting_seconds_total": (0.03125, 0.03125),
    "node_pressure_io_stalled_seconds_total": (0.0, 0.0),
    "node_vmstat_pswpin": (0.0, 100.0),
    "node_vmstat_pswpout": (0.0, 50.0),
}


def scrape_times() -> range:
    return range(SCRAPE_OFFSET, DURATION + 1, SCRAPE)


def scrapes_between(lo: int, hi: int) -> list[int]:
    """Scrape times in (lo, hi]."""
    return [s for s in scrape_times() if lo < s <= hi]


def first_scrape_after(t: int) -> int:
    return next(s for s in scrape_times() if s > t)


def within(window: tuple[int, int], t: int) -> bool:
    return window[0] < t <= window[1]


def dead(vantage: str, t: int) -> bool:
    """The probe is not running, so this scrape fails."""
    died, restarted = RESTARTS[vantage]
    return died < t <= restarted


def epoch_start(vantage: str, t: int) -> int:
    """Events after this time are in the probe's counters at ``t``."""
    restarted = RESTARTS[vantage][1]
    return restarted if t > restarted else -1


def connected(vantage: str, leg: str, t: int) -> bool:
    return not any(
        d.vantage == vantage and d.leg == leg and d.at <= t < d.at + d.down_for for d in DROPS
    )


def suspected(vantage: str, segment: str, t: int) -> bool:
    return any(
        CONVICTS[vantage, leg] == segment and not connected(vantage, leg, t)
        for leg in LEGS[vantage]
    )


def degraded(vantage: str, segment: str, t: int) -> bool:
    """The RTT spike makes the leg slow while up: its segment is found degraded."""
    return any(
        CONVICTS[vantage, leg] == segment
        and connected(vantage, leg, t)
        and (vantage, leg) in RTT_SPIKE
        and within(RTT_SPIKE[vantage, leg][0], t)
        for leg in LEGS[vantage]
    )


def verdict(vantage: str, t: int) -> str:
    spike = LAG_SPIKE.get(vantage)
    if spike is not None and within(spike[0], t):
        return "probe_unhealthy"
    if any(suspected(vantage, segment, t) for segment in SEGMENTS[vantage]):
        return "suspect"
    if any(degraded(vantage, segment, t) for segment in SEGMENTS[vantage]):
        return "degraded"
    # A fresh process has no verdict for its first attribution window.
    if t - max(epoch_start(vantage, t), 0) <= 30:
        return "unknown"
    return "infra_clean"


def rtt_observations(vantage: str, leg: str, t: int) -> list[float]:
    """Heartbeat RTTs recorded in the 15 s before scrape time ``t`` (none while down)."""
    if dead(vantage, t) or not connected(vantage, leg, t):
        return []
    value = RTT_NORMAL[vantage, leg]
    spike = RTT_SPIKE.get((vantage, leg))
    if spike is not None and within(spike[0], t):
        value = spike[1]
    return [value] * HEARTBEATS_PER_SCRAPE


def lag_observations(vantage: str, t: int) -> list[float]:
    if dead(vantage, t):
        return []
    spike = LAG_SPIKE.get(vantage)
    value = spike[1] if spike is not None and within(spike[0], t) else LAG_NORMAL
    return [value] * LAG_SAMPLES_PER_SCRAPE


def connect_observations(vantage: str, leg: str, t: int) -> dict[str, list[float]]:
    """Connection phases measured at a (re)connect recorded at ``t``."""
    reconnects = sum(
        1 for d in DROPS if (d.vantage, d.leg) == (vantage, leg) and d.at + d.down_for == t
    )
    if t in (SCRAPE_OFFSET, first_scrape_after(RESTARTS[vantage][1])):
        reconnects += 1
    return {phase: [CONNECT_SECONDS[phase]] * reconnects for phase in CONNECT_PHASES}


def dns_failures(vantage: str, leg: str, reason: str, t: int) -> int:
    return sum(
        1
        for v, lg, r, window in DNS_FAILURES
        if (v, lg, r) == (vantage, leg, reason) and within(window, t) and not dead(vantage, t)
    )


def host_rate(metric: str, t: int) -> float:
    normal, spike = HOST_RATES[metric]
    return spike if within(HOST_SPIKE, t) else normal


def bucket_of(value: float, bounds: tuple[float, ...]) -> float:
    """The ``le`` of the bucket an observation lands in."""
    return next((b for b in bounds if value <= b), math.inf)


def le_text(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


# --- rendering to series -----------------------------------------------------------

Labels = tuple[tuple[str, str], ...]
Points = list[tuple[int, float]]


@dataclass
class Family:
    kind: str  # counter, gauge, histogram, unknown (OpenMetrics types)
    # (sample name, labels) -> points, in time order
    series: dict[tuple[str, Labels], Points]


def _labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = (*bounds, math.inf)
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(self.bounds, 0)
        self.total = 0.0

    def observe(self, values: list[float]) -> None:
        for value in values:
            for bound in self.bounds:
                if value <= bound:
                    self.counts[bound] += 1
            self.total += value


class _Recorder:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def put(self, family: str, kind: str, labels: Labels, t: int, value: float) -> None:
        suffix = "_total" if kind == "counter" else ""
        self._append(family, kind, family + suffix, labels, t, value)

    def put_histogram(self, family: str, labels: Labels, t: int, hist: _Histogram) -> None:
        for bound in hist.bounds:
            le = tuple(sorted((*labels, ("le", le_text(bound)))))
            self._append(family, "histogram", family + "_bucket", le, t, hist.counts[bound])
        self._append(family, "histogram", family + "_count", labels, t, hist.counts[math.inf])
        self._append(family, "histogram", family + "_sum", labels, t, hist.total)

    def _append(
        self, family: str, kind: str, name: str, labels: Labels, t: int, value: float
    ) -> None:
        entry = self.families.setdefault(family, Family(kind, defaultdict(list)))
        entry.series[name, labels].append((t, float(value)))


def samples(origin: int) -> dict[str, Family]:
    """Every series of the history by metric family; ``origin`` is its absolute start."""
    rec = _Recorder()
    base = {"job": JOB, "instance": INSTANCE}
    for vantage, legs in LEGS.items():
        target = _labels(vantage=vantage, **base)
        rtt = {leg: _Histogram(RTT_BUCKETS) for leg in legs}
        age = {leg: _Histogram(AGE_BUCKETS) for leg in legs}
        conn: dict[tuple[str, str], _Histogram] = {
            (leg, p): _Histogram(CONNECT_BUCKETS) for leg in legs for p in CONNECT_PHASES
        }
        lag = _Histogram(LAG_BUCKETS)
        drops: dict[tuple[str, str], int] = defaultdict(int)
        dns: dict[tuple[str, str], int] = defaultdict(int)
        last: dict[str, float] = defaultdict(float)
        epoch = -1
        for t in scrape_times():
            if epoch_start(vantage, t) != epoch:
                # A new process: every counter and histogram starts again at 0.
                epoch = epoch_start(vantage, t)
                for hist in [*rtt.values(), *age.values(), *conn.values(), lag]:
                    hist.reset()
                drops.clear()
                dns.clear()
                last.clear()
            if dead(vantage, t):
                rec.put("up", "unknown", target, t, 0)
                continue
            rec.put("up", "unknown", target, t, 1)
            rec.put(
                "t3probe_build_info",
                "gauge",
                _labels(version=VERSION, **base, vantage=vantage),
                t,
                1,
            )
            for leg in legs:
                at = {"leg": leg, "vantage": vantage, **base}
                for d in DROPS:
                    if (d.vantage, d.leg, d.at) == (vantage, leg, t):
                        drops[leg, d.reason] += 1
                        age[leg].observe([d.age])
                        last[leg] = origin + d.died_at
                rtt[leg].observe(rtt_observations(vantage, leg, t))
                for phase, values in connect_observations(vantage, leg, t).items():
                    conn[leg, phase].observe(values)
                for reason in DNS_REASONS:
                    dns[leg, reason] += dns_failures(vantage, leg, reason, t)
                    rec.put(
                        "t3probe_dns_failures",
                        "counter",
                        _labels(reason=reason, **at),
                        t,
                        dns[leg, reason],
                    )
                for reason in REASONS:
                    rec.put(
                        "t3probe_disconnects",
                        "counter",
                        _labels(reason=reason, **at),
                        t,
                        drops[leg, reason],
                    )
                rec.put("t3probe_connected", "gauge", _labels(**at), t, connected(vantage, leg, t))
                rec.put(
                    "t3probe_last_disconnect_timestamp_seconds",
                    "gauge",
                    _labels(**at),
                    t,
                    last[leg],
                )
                info = _labels(kind=LEG_KIND[leg], resolver="system", **at)
                rec.put("t3probe_leg_info", "gauge", info, t, 1)
                rec.put_histogram("t3probe_rtt_seconds", _labels(**at), t, rtt[leg])
                rec.put_histogram("t3probe_connection_age_seconds", _labels(**at), t, age[leg])
                for phase in CONNECT_PHASES:
                    phase_labels = _labels(phase=phase, **at)
                    rec.put_histogram(
                        "t3probe_connect_duration_seconds", phase_labels, t, conn[leg, phase]
                    )
            for segment in SEGMENTS[vantage]:
                for name, state in (
                    ("t3probe_segment_suspected", suspected),
                    ("t3probe_segment_degraded", degraded),
                ):
                    rec.put(
                        name,
                        "gauge",
                        _labels(segment=segment, **dict(target)),
                        t,
                        float(state(vantage, segment, t)),
                    )
            current = verdict(vantage, t)
            for name in VERDICT_NAMES:
                rec.put(
                    "t3probe_verdict",
                    "gauge",
                    _labels(verdict=name, **dict(target)),
                    t,
                    name == current,
                )
            lag.observe(lag_observations(vantage, t))
            rec.put_histogram("t3probe_event_loop_lag_seconds", target, t, lag)
    node = _labels(job="node", instance=NODE, role="backend")
    for metric in HOST_RATES:
        # The host booted long before: its counters are far from 0 (rate() extrapolates
        # a counter that starts in the window only down to its zero point).
        total = 1e6
        for t in scrape_times():
            total += host_rate(metric, t) * SCRAPE if t > SCRAPE_OFFSET else 0.0
            rec.put(metric, "unknown", node, t, total)
    return rec.families


def openmetrics(start: int) -> str:
    """The history as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``."""
    lines: list[str] = []
    for family, entry in samples(start).items():
        lines.append(f"# TYPE {family} {entry.kind}")
        for (name, labels), points in entry.series.items():
            text = ",".join(f'{key}="{value}"' for key, value in labels)
            lines.extend(f"{name}{{{text}}} {value!r} {start + t}" for t, value in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
