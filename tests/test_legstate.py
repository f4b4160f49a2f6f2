"""Per-leg up/down bookkeeping: which reports are transitions, and the evidence's times."""

from __future__ import annotations

import copy
import math
import random

import pytest
from prometheus_client import CollectorRegistry

from t3probe.attribution import Policy, compute_verdict
from t3probe.config import ProbeConfig, build_config
from t3probe.degradation import DegradationPolicy, RttTracker
from t3probe.legstate import RECENT_DROPS_PER_LEG, LegRecord
from t3probe.metrics import ProbeMetrics
from t3probe.reasons import Classified, Reason
from t3probe.recorder import Recorder
from tests.support.fakes import FakeClock


def test_repeated_up_reports_are_one_transition() -> None:
    record = LegRecord("ws", ("lb",))
    assert record.mark_up(1.0, 101.0) is True
    assert record.mark_up(2.0, 102.0) is False
    assert (record.state, record.since, record.up_since) == ("up", 1.0, 101.0)
    assert record.recovered_from is None  # it came up from unknown, not from a failure


def test_down_reports_transition_once_per_failure_mode() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 101.0)
    assert record.mark_down(Reason.RESET, 2.0, 102.0) is True  # it was up
    assert record.mark_down(Reason.RESET, 3.0, 103.0) is None  # same failure again
    assert record.mark_down(Reason.CONNECT_REFUSED, 4.0, 104.0) is False  # new mode
    # One drop: a change of failure mode while down is not another drop.
    assert [reason for _, reason in record.recent_drops] == [Reason.RESET]
    assert record.observation().reason is Reason.CONNECT_REFUSED


def test_every_failed_attempt_moves_the_evidence_time() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_down(Reason.RESET, 2.0, 102.0)
    record.mark_down(Reason.RESET, 3.0, 103.0)
    assert record.observation().last_failure_at == 103.0
    record.mark_up(4.0, 104.0)
    observed = record.observation()
    assert (observed.up_since, observed.recovered_from) == (104.0, Reason.RESET)


def test_recent_drops_are_bounded_and_on_the_monotonic_clock() -> None:
    record = LegRecord("ws", ("lb",))
    for index in range(RECENT_DROPS_PER_LEG * 2):
        record.mark_up(float(index), 1000.0 + index)
        record.mark_down(Reason.RESET, float(index), 1000.0 + index)
    assert len(record.recent_drops) == RECENT_DROPS_PER_LEG
    assert record.recent_drops[-1][0] == 1000.0 + RECENT_DROPS_PER_LEG * 2 - 1


def test_an_answer_dates_the_evidence_from_when_its_heartbeat_was_sent() -> None:
    # A 2 s echo arriving at 110 shows the path worked at 108, not at 110: a neighbour
    # that dropped at 109 is not contradicted by it.
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 100.0)
    record.mark_success(2.0, 110.0)
    assert record.observation().last_success_at == 108.0
    assert record.last_rtt == 2.0


def test_a_new_failure_mode_while_down_keeps_the_outage_start() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 101.0)
    record.mark_down(Reason.RESET, 2.0, 102.0)
    record.mark_down(Reason.CONNECT_REFUSED, 4.0, 104.0)
    # The leg has been down since the drop, whatever its reconnects meet meanwhile.
    assert (record.since, record.reason) == (2.0, Reason.CONNECT_REFUSED)
    record.mark_up(5.0, 105.0)
    assert record.since == 5.0


def _four() -> LegRecord:
    from t3probe.degradation import DegradationPolicy, RttTracker

    return LegRecord.with_connections("ws", ("lb",), 4, 0.0, RttTracker(DegradationPolicy()))


def test_a_leg_of_several_connections_is_up_only_when_all_are() -> None:
    record = _four()
    for index in range(3):
        assert record.mark_up(1.0, 101.0 + index, index) is True
    assert (record.state, record.connections_up) == ("unknown", 3)
    record.mark_up(2.0, 110.0, 3)
    assert (record.state, record.up_since, record.connections_up) == ("up", 110.0, 4)


def test_some_connections_down_make_the_leg_down_with_one_drop() -> None:
    record = _four()
    for index in range(4):
        record.mark_up(1.0, 100.0, index)
    assert record.mark_down(Reason.RESET, 2.0, 102.0, index=0) is True
    assert record.mark_down(Reason.RESET, 2.0, 102.1, index=2) is True
    # One leg-level drop for the burst: flapping counts drops of the leg, not of each socket.
    assert [reason for _, reason in record.recent_drops] == [Reason.RESET]
    observed = record.observation(now=103.0, window=20.0)
    assert (observed.state, observed.reason, observed.partial) == ("down", Reason.RESET, True)
    assert (observed.connections, observed.connections_up, observed.failed_connections) == (
        4,
        2,
        2,
    )
    record.mark_up(3.0, 104.0, 0)
    record.mark_up(3.0, 104.5, 2)
    observed = record.observation(now=105.0, window=20.0)
    assert (observed.state, observed.up_since, observed.recovered_from) == (
        "up",
        104.5,
        Reason.RESET,
    )
    # Back up, but they dropped within the window: still the blast radius's failures.
    assert observed.failed_connections == 2
    assert record.observation(now=130.0, window=20.0).failed_connections == 0


def test_a_path_reason_on_any_connection_names_the_leg_down() -> None:
    record = _four()
    for index in range(4):
        record.mark_up(1.0, 100.0, index)
    record.mark_down(Reason.DNS_FAILED, 2.0, 102.0, index=1)
    record.mark_down(Reason.RTT_TIMEOUT, 2.5, 102.5, index=3)
    record.mark_down(Reason.PROBE_NETWORK, 3.0, 103.0, index=0)
    observed = record.observation(now=104.0, window=20.0)
    # The newest is local, but a path failure says more about the segments.
    assert observed.reason is Reason.RTT_TIMEOUT
    assert observed.failed_connections == 1  # local reasons are no failure of the path
    # Nor did those connections cross the path: the one up and the one failed did.
    assert observed.measured_connections == 2


def test_a_healthy_leg_vouches_as_of_its_stalest_connection() -> None:
    record = _four()
    for index in range(4):
        record.mark_up(1.0, 100.0, index)
        record.mark_success(0.5, 101.0 + index, index)
    assert record.observation().last_success_at == 100.5


def test_a_connection_back_from_a_long_outage_counts_in_the_blast_radius_while_convicting() -> None:
    # Down longer than the window, back up at 200: the leg convicts its segments for the
    # window after (hysteresis), and the connection that was down is what it convicts on.
    # A suspect with a blast radius of 0 would say no connection crossing it failed.
    record = LegRecord.with_connections("ws", ("lb",), 2, 0.0, RttTracker(DegradationPolicy()))
    record.mark_up(1.0, 100.0, 0)
    record.mark_up(1.0, 100.0, 1)
    record.mark_down(Reason.RESET, 2.0, 102.0, index=1)
    record.mark_down(Reason.RESET, 50.0, 150.0, index=1)
    record.mark_up(100.0, 200.0, 1)
    verdict = compute_verdict([record.observation(now=205.0, window=20.0)], 205.0, 20.0)
    assert (verdict.verdict, verdict.suspects) == ("suspect", ("lb",))
    assert verdict.blast_radius == {"lb": 0.5}
    # Once the window is over, the leg clears and so does its failure.
    assert record.observation(now=221.0, window=20.0).failed_connections == 0


def test_a_leg_whose_down_connections_are_back_is_not_down_while_others_never_reported() -> None:
    # Start-up: connection 1 failed its first dial and came back while connection 3 has
    # not dialled yet (a thousand connections queue at the dial gate). No connection is
    # down: the leg is not "down" with a stale reason (failing, to attribution, for as
    # long as the queue takes), it is unknown until every connection has reported.
    record = _four()
    record.mark_up(1.0, 100.0, 0)
    record.mark_up(1.0, 100.0, 2)
    record.mark_down(Reason.CONNECT_REFUSED, 2.0, 102.0, index=1)
    record.mark_up(3.0, 103.0, 1)
    observed = record.observation(now=200.0, window=20.0)
    assert (observed.state, observed.reason, observed.connections_up) == ("unknown", None, 3)
    # Its drop still counts for the window, as any drop does.
    assert [reason for _, reason in record.recent_drops] == [Reason.CONNECT_REFUSED]
    record.mark_up(4.0, 104.0, 3)
    assert (record.state, record.up_since) == ("up", 104.0)


def test_a_flapping_leg_counts_its_flapping_connections_in_the_blast_radius() -> None:
    # One of two connections dropped twice within the flap window (90 s) but not within
    # the attribution window (20 s): the leg convicts as flapping, on that connection.
    record = LegRecord.with_connections("ws", ("lb",), 2, 0.0, RttTracker(DegradationPolicy()))
    record.mark_up(1.0, 100.0, 0)
    record.mark_up(1.0, 100.0, 1)
    for at in (110.0, 140.0):
        record.mark_down(Reason.RESET, at - 100, at, index=1)
        record.mark_up(at - 99, at + 1, 1)
    policy = Policy(window=20.0, flap_window=90.0)
    verdict = compute_verdict([record.observation(170.0, 20.0, flap_window=90.0)], 170.0, policy)
    assert (verdict.verdict, verdict.leg_status["ws"]) == ("suspect", "flapping")
    assert verdict.blast_radius == {"lb": 0.5}


def test_a_cached_observation_is_always_what_a_fresh_one_would_be() -> None:
    import copy
    import random

    from t3probe.degradation import DegradationPolicy, RttTracker

    rng = random.Random(7)
    reasons = [Reason.RESET, Reason.RTT_TIMEOUT, Reason.DNS_FAILED]
    for connections in (1, 3):
        record = LegRecord.with_connections(
            "ws", ("lb",), connections, 0.0, RttTracker(DegradationPolicy())
        )
        now = 100.0
        for _ in range(2000):
            now += rng.choice((0.0, 0.01, 0.5, 3.0, 19.99, 20.0))
            index = rng.randrange(connections)
            action = rng.randrange(4)
            if action == 0:
                record.mark_up(now, now, index)
            elif action == 1:
                record.mark_down(rng.choice(reasons), now, now, index=index)
            elif action == 2:
                record.mark_success(rng.choice((0.001, 0.5)), now, index)
            windows = rng.choice(((20.0, 60.0), (20.0, 0.0), (5.0, 5.0)))
            cached = record.observation(now, *windows)
            fresh = copy.copy(record)
            fresh.invalidate()
            assert cached == fresh.observation(now, *windows), (connections, now)


@pytest.mark.parametrize(
    ("at", "window", "first", "then"),
    [
        # at + window rounds down: the failure still counts just past it (now - at is
        # exactly the window), and must stop counting later on.
        (0.2857135293419564, 30.0, 30.285713529341958, 100.0),
        # at + window rounds up: at that very time now - at is past the window already.
        (8141.577, 60.0, 8142.0, 8141.577 + 60.0),
    ],
)
def test_a_cached_observation_ages_out_exactly_when_a_fresh_one_does(
    at: float, window: float, first: float, then: float
) -> None:
    # The cache's expiry is computed as at + window, the count as now - at <= window:
    # one rounding apart, and a failure must age out of both at the same instant.
    record = LegRecord("ws", ("lb",))
    record.mark_down(Reason.RESET, 1.0, at - 1.0)
    record.mark_up(2.0, at)  # back from a path outage: counted for the window after
    record.observation(first, window)
    fresh = copy.copy(record)
    fresh.invalidate()
    assert record.observation(then, window) == fresh.observation(then, window)


def _recorder_config(window: float, flap_window: float, ratio: float) -> ProbeConfig:
    return build_config(
        {
            "listen": "127.0.0.1:0",
            "heartbeat_seconds": 1.0,
            "watchdog_seconds": 2.0,
            "attribution_window_seconds": window,
            "flap_window_seconds": flap_window,
            "degraded_rtt_ratio": ratio,
            "legs": [
                {
                    "name": f"ws{count}",
                    "kind": "websocket",
                    "url": "ws://127.0.0.1:1/ws",
                    "segments": ["lb"],
                    "connections": count,
                }
                for count in (1, 3)
            ],
        }
    )


def test_a_cached_observation_is_what_a_fresh_one_would_be_through_the_recorder() -> None:
    # The recorder changes what an observation reads outside LegRecord's own methods
    # (slowness and loss, a new connection, a reload's windows and rules): random
    # histories of all of it, at times that land on the windows' very ends.
    rng = random.Random(11)
    clock = FakeClock()
    clock.now = 0.25  # a monotonic clock soon after boot: times below the windows
    configs = [_recorder_config(*args) for args in ((5.0, 15.0, 3.0), (3.0, 0.0, 1.5))]
    config = configs[0]
    recorder = Recorder(config, ProbeMetrics(CollectorRegistry(), config), clock, lambda _: None)
    reasons = [Reason.RESET, Reason.RTT_TIMEOUT, Reason.DNS_FAILED]
    for _ in range(3000):
        clock.advance(rng.choice((0.0, 0.01, 0.3, 1.0, 2.9)))
        leg = rng.choice(("ws1", "ws3"))
        connection = rng.randrange(1 if leg == "ws1" else 3)
        action = rng.randrange(7)
        if action == 0:
            recorder.leg_up(leg, connection=connection)
        elif action == 1:
            failure = Classified(rng.choice(reasons), "x")
            recorder.leg_down(leg, failure, 1.0, connection=connection)
        elif action in (2, 3):
            recorder.observe_rtt(leg, rng.choice((0.01, 0.01, 0.5)), connection)
        elif action == 4:
            recorder.heartbeats_lost(leg, rng.randrange(1, 4))
        elif action == 5 and rng.random() < 0.05:
            config = rng.choice(configs)
            recorder.reconfigure(config, (), ())
        elif action == 6:
            # To the exact end of a window of a failure: where a rounding would show.
            ends = [
                at + span
                for record in recorder._legs.values()
                for c in record.connections
                if (at := c.last_path_failure_at) is not None
                for span in (config.attribution_window_seconds, config.effective_flap_window)
                if at + span > clock.now
            ]
            if ends:
                # Or just past it: either side of a rounding.
                clock.now = min(ends)
                if rng.random() < 0.5:
                    clock.now = math.nextafter(clock.now, math.inf)
        cached = recorder.observations()
        fresh = []
        for record in recorder._legs.values():
            copied = copy.copy(record)
            copied.invalidate()
            fresh.append(
                copied.observation(
                    clock.now, config.attribution_window_seconds, config.effective_flap_window
                )
            )
        assert cached == fresh, clock.now
