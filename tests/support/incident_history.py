"""A recorded history for ``attribute``'s incident tests, as OpenMetrics for promtool.

Plays back what a probe with the lab's three legs, node_exporter on the backend host and
kube-state-metrics would have exported, with faults at known times (seconds after
``origin``):

- no data before :data:`FIRST` (the probe was not running yet);
- a CDN-only fault at :data:`CDN` (``cloudflare`` down 25 s, ``reset``: its evidence
  still holds when the next fault begins);
- an LB fault :data:`LB` = CDN + 40 s (``cloudflare`` and ``internal`` down 10 s), while a
  traefik pod restarts OOM-killed just before it;
- a backend fault at :data:`BACKEND` (``t3serve`` down 15 s, ``rtt_timeout``) while
  memory pressure on the backend host stalls 34 % of wall time from BACKEND - 30 s to
  BACKEND + 60 s;
- the CDN leg slow but never down for three minutes from :data:`SLOW`
  (``t3probe_leg_degraded``);
- the CDN leg slow from :data:`SLOW_DROP` - 30 s, then dropping at :data:`SLOW_DROP`
  (``reset``, back 10 s later): slowness before a hard fault.

The probe's own convictions (``t3probe_segment_suspected``) and slow segments
(``t3probe_segment_degraded``) are those its live verdict would have exported:
:data:`CONVICTED`, :data:`SLOWED`.

No ``node_pressure_io_stalled_seconds_total`` and no
``kube_deployment_status_observed_generation``: those evidence queries are "not
available".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SCRAPE = 2.0
FIRST = 60.0
CDN = 200.4
LB = CDN + 40.0
BACKEND = 400.0
SLOW = 480.0
SLOW_END = SLOW + 180.0
SLOW_DROP = 720.0
END = 800.0
STALL_SHARE = 0.34
PROBE = {"job": "t3probe", "instance": "probe:9108"}
NODE = {"job": "node", "instance": "backend:9100"}
POD = {
    "job": "kube-state-metrics",
    "namespace": "ingress",
    "pod": "traefik-7d9",
    "container": "traefik",
}
RESTART_AT = LB - 1.0

# leg → [(down at, up at, reason)]
OUTAGES: dict[str, list[tuple[float, float, str]]] = {
    "cloudflare": [
        (CDN, CDN + 25, "reset"),
        (LB, LB + 10, "reset"),
        (SLOW_DROP, SLOW_DROP + 10, "reset"),
    ],
    "internal": [(LB + 0.3, LB + 10, "reset")],
    "t3serve": [(BACKEND, BACKEND + 15, "rtt_timeout")],
}
# (from, until, segments) the live probe convicted: each fault's, held 20 s after it.
CONVICTED = [
    (CDN, LB + 0.3, ("wan", "cf_edge", "cf_tunnel")),
    (LB + 0.3, LB + 30, ("traefik", "dispatch")),
    (BACKEND, BACKEND + 35, ("t3serve",)),
    (SLOW_DROP, SLOW_DROP + 30, ("wan", "cf_edge", "cf_tunnel")),
]
# leg → [(slow from, until)]: ``t3probe_leg_degraded`` is 1 meanwhile; a drop ends it.
DEGRADED: dict[str, list[tuple[float, float]]] = {
    "cloudflare": [(SLOW, SLOW_END), (SLOW_DROP - 30, SLOW_DROP)],
}
# (from, until, segments) the live probe found slow: held a window after the slowness.
SLOWED = [
    (SLOW, SLOW_END + 20, ("wan", "cf_edge", "cf_tunnel")),
    (SLOW_DROP - 30, SLOW_DROP, ("wan", "cf_edge", "cf_tunnel")),
]
SEGMENTS = {
    "cloudflare": ["wan", "cf_edge", "cf_tunnel", "traefik", "dispatch"],
    "internal": ["traefik", "dispatch"],
    "t3serve": ["t3serve"],
}


Sample = tuple[str, dict[str, str], float, float]  # metric, labels, value, at


@dataclass(frozen=True)
class Times:
    origin: float

    def __call__(self, offset: float) -> float:
        return self.origin + offset


def probe_config() -> str:
    """The probe's config for ``--config``: the legs' segments, default windows."""
    legs = []
    for name, segments in SEGMENTS.items():
        kind = "http" if name == "t3serve" else "websocket"
        url = "http://t3serve.test/" if kind == "http" else "wss://t3.test/probe/ws"
        legs.append(
            f"  - name: {name}\n    kind: {kind}\n    url: {url}\n"
            f"    segments: [{', '.join(segments)}]\n"
        )
    return "legs:\n" + "".join(legs)


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def _scrapes(start: float = FIRST) -> Iterator[float]:
    at = start
    while at <= END:
        yield at
        at += SCRAPE


def _down(leg: str, at: float) -> bool:
    return any(down <= at < up for down, up, _ in OUTAGES[leg])


def openmetrics(origin: float) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, samples: list[Sample]) -> None:
        lines.append(f"# TYPE {name} {kind}")
        for metric, labels, value, at in samples:
            lines.append(f"{metric}{_labels(labels)} {value!r} {origin + at:.3f}")

    connected: list[Sample] = []
    drops: list[Sample] = []
    stamps: list[Sample] = []
    for leg in OUTAGES:
        labels = {**PROBE, "leg": leg}
        for at in _scrapes():
            connected.append(("t3probe_connected", labels, 0.0 if _down(leg, at) else 1.0, at))
            past = [o for o in OUTAGES[leg] if o[0] <= at]
            for reason in sorted({o[2] for o in OUTAGES[leg]}):
                count = sum(1 for o in past if o[2] == reason)
                drops.append(("t3probe_disconnects_total", {**labels, "reason": reason}, count, at))
            last = max((origin + o[0] for o in past), default=0.0)
            stamps.append(("t3probe_last_disconnect_timestamp_seconds", labels, last, at))
    family("t3probe_connected", "gauge", connected)
    family("t3probe_disconnects", "counter", drops)
    family("t3probe_last_disconnect_timestamp_seconds", "gauge", stamps)
    degraded: list[Sample] = []
    for leg in OUTAGES:
        for at in _scrapes():
            on = any(a <= at < b for a, b in DEGRADED.get(leg, []))
            labels = {**PROBE, "leg": leg}
            degraded.append(("t3probe_leg_degraded", labels, 1.0 if on else 0.0, at))
    family("t3probe_leg_degraded", "gauge", degraded)
    for metric, spells in (
        ("t3probe_segment_suspected", CONVICTED),
        ("t3probe_segment_degraded", SLOWED),
    ):
        flags: list[Sample] = []
        for segment in dict.fromkeys(s for segments in SEGMENTS.values() for s in segments):
            for at in _scrapes():
                on = any(a <= at < b and segment in segs for a, b, segs in spells)
                flags.append((metric, {**PROBE, "segment": segment}, 1.0 if on else 0.0, at))
        family(metric, "gauge", flags)

    stalled: list[Sample] = []
    oom: list[Sample] = []
    total = 0.0
    for at in _scrapes(0.0):
        stalled.append(("node_pressure_memory_stalled_seconds_total", NODE, total, at))
        oom.append(("node_vmstat_oom_kill", NODE, 0.0, at))
        pressed = BACKEND - 30 <= at < BACKEND + 60
        total += SCRAPE * (STALL_SHARE if pressed else 0.001)
    family("node_pressure_memory_stalled_seconds", "counter", stalled)
    family("node_vmstat_oom_kill", "gauge", oom)

    restarts: list[Sample] = []
    reasons: list[Sample] = []
    for at in _scrapes(0.0):
        restarted = at >= RESTART_AT
        restarts.append(
            ("kube_pod_container_status_restarts_total", POD, 4.0 if restarted else 3.0, at)
        )
        if restarted:
            oom_labels = {**POD, "reason": "OOMKilled"}
            metric = "kube_pod_container_status_last_terminated_reason"
            reasons.append((metric, oom_labels, 1.0, at))
    family("kube_pod_container_status_restarts", "counter", restarts)
    family("kube_pod_container_status_last_terminated_reason", "gauge", reasons)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
