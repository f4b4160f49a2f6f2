"""What a leg costs on /metrics before anything has happened to it: the series the
alerts and dashboards need from the start, and nothing that could never be used."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from t3probe.config import build_config
from t3probe.metrics import CONNECT_BUCKETS, ProbeMetrics
from t3probe.reasons import Reason


def _series(url: str) -> list[str]:
    config = build_config(
        {
            "listen": "127.0.0.1:0",
            "legs": [{"name": "a", "kind": "websocket", "url": url, "segments": ["s"]}],
        }
    )
    registry = CollectorRegistry()
    metrics = ProbeMetrics(registry, config)
    metrics.connect_duration.labels(leg="a", phase="tcp").observe(0.002)
    text = generate_latest(registry).decode()
    # `t3probe run` turns *_created off (cli.py); the library default here keeps them.
    return [
        line
        for line in text.splitlines()
        if not line.startswith("#") and 'leg="a"' in line and "_created{" not in line
    ]


def test_every_disconnect_reason_is_there_from_the_start() -> None:
    # The drop alerts take increase() over them: a series born at 1 hides its first drop.
    series = _series("ws://127.0.0.1:9/ws")
    for reason in Reason:
        assert f't3probe_disconnects_total{{leg="a",reason="{reason.value}"}} 0.0' in series


def test_reconnect_failures_start_with_the_wall_alerts_reason_only() -> None:
    series = [s for s in _series("ws://127.0.0.1:9/ws") if "reconnect_failures" in s]
    assert series == ['t3probe_reconnect_failures_total{leg="a",reason="http_error"} 0.0']


def test_a_leg_dialling_an_address_has_no_dns_failure_series() -> None:
    assert not [s for s in _series("ws://127.0.0.1:9/ws") if "dns_failures" in s]
    named = [s for s in _series("ws://probe.example.test:9/ws") if "dns_failures" in s]
    assert len(named) == 10


def test_connect_phases_appear_when_observed_with_few_buckets() -> None:
    phases = [s for s in _series("ws://127.0.0.1:9/ws") if "connect_duration" in s]
    assert all('phase="tcp"' in s for s in phases)
    assert len(phases) == len(CONNECT_BUCKETS) + 1 + 2  # buckets, +Inf, _sum, _count
