"""A leg of several connections, as the recorder reports it: its events, metrics and
verdict stay consistent with each other while only some of its connections are down."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from t3probe.config import build_config
from t3probe.metrics import ProbeMetrics
from t3probe.reasons import Classified, Reason
from t3probe.recorder import Recorder
from tests.support.fakes import FakeClock

FAST, SLOW = 0.001, 0.5


def _recorder(clock: FakeClock, connections: int = 2) -> tuple[Recorder, CollectorRegistry]:
    config = build_config(
        {
            "listen": "127.0.0.1:0",
            "heartbeat_seconds": 1.0,
            "watchdog_seconds": 2.0,
            "attribution_window_seconds": 5.0,
            "legs": [
                {
                    "name": "ws",
                    "kind": "websocket",
                    "url": "ws://127.0.0.1:1/ws",
                    "segments": ["lb", "backend"],
                    "connections": connections,
                }
            ],
        }
    )
    registry = CollectorRegistry()
    return Recorder(config, ProbeMetrics(registry, config), clock, lambda _: None), registry


def _degraded_metric(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("t3probe_leg_degraded", {"leg": "ws"})


def _rtts(recorder: Recorder, clock: FakeClock, seconds: float, count: int) -> None:
    for _ in range(count):
        clock.advance(1.0)
        recorder.observe_rtt("ws", seconds, connection=0)


def test_a_leg_slow_while_partial_announces_its_degradation_once_it_is_up() -> None:
    # The surviving connection's round trips went slow while the other was down: once
    # the leg is whole again it is degraded (the verdict says so), and the events must
    # say it too, or a "recovered" later answers a "degraded" that was never published.
    clock = FakeClock()
    recorder, registry = _recorder(clock)
    recorder.leg_up("ws", connection=0)
    recorder.leg_up("ws", connection=1)
    _rtts(recorder, clock, FAST, 10)  # the baseline
    recorder.leg_down("ws", Classified(Reason.RESET, "lb"), 10.0, connection=1)
    _rtts(recorder, clock, SLOW, 5)
    # Down supersedes slow, as for a leg of one connection.
    assert _degraded_metric(registry) == 0
    recorder.leg_up("ws", connection=1)
    assert recorder.observations()[0].degraded
    kinds = [event.kind for event in recorder.events.since()]
    assert kinds[-2:] == ["up", "degraded"], kinds
    assert _degraded_metric(registry) == 1
    _rtts(recorder, clock, FAST, 5)
    kinds = [event.kind for event in recorder.events.since()]
    assert kinds[-1] == "recovered", kinds
    assert _degraded_metric(registry) == 0


def test_a_leg_recovering_from_slowness_while_partial_publishes_no_recovery() -> None:
    clock = FakeClock()
    recorder, registry = _recorder(clock)
    recorder.leg_up("ws", connection=0)
    recorder.leg_up("ws", connection=1)
    _rtts(recorder, clock, FAST, 10)
    _rtts(recorder, clock, SLOW, 5)
    assert [event.kind for event in recorder.events.since()][-1] == "degraded"
    recorder.leg_down("ws", Classified(Reason.RESET, "lb"), 10.0, connection=1)
    # The down said what happened: the leg is not degraded while it is down.
    assert _degraded_metric(registry) == 0
    _rtts(recorder, clock, FAST, 5)
    recorder.leg_up("ws", connection=1)
    kinds = [event.kind for event in recorder.events.since()]
    assert kinds[-3:] == ["degraded", "down", "up"], kinds
    assert _degraded_metric(registry) == 0
