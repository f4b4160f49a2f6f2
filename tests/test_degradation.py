"""A leg's slowness against its own baseline, and its lost heartbeats (pure, no clock)."""

from __future__ import annotations

import random

from t3probe.degradation import DegradationPolicy, RttTracker

LOOPBACK = 0.001


def _tracker(**policy: float) -> RttTracker:
    return RttTracker(DegradationPolicy(**policy))  # type: ignore[arg-type]


def _learnt(baseline: float = LOOPBACK, samples: int = 30) -> RttTracker:
    tracker = _tracker()
    for _ in range(samples):
        tracker.observe(baseline)
    return tracker


def _heartbeats_until_degraded(tracker: RttTracker, rtt: float, limit: int = 20) -> int | None:
    for count in range(1, limit + 1):
        tracker.observe(rtt)
        if tracker.degraded:
            return count
    return None


def test_ten_quiet_minutes_of_loopback_jitter_flag_nothing() -> None:
    # 600 heartbeats of 0.2-3 ms, with a 30-80 ms spike (a GC pause, a busy core) one
    # heartbeat in twenty.
    rng = random.Random(7)
    tracker = _tracker()
    for _ in range(600):
        spike = rng.random() < 0.05
        tracker.observe(rng.uniform(0.03, 0.08) if spike else rng.uniform(0.0002, 0.003))
        assert not tracker.degraded


def test_a_300ms_step_on_a_loopback_leg_is_degraded_within_a_few_heartbeats() -> None:
    assert _heartbeats_until_degraded(_learnt(), LOOPBACK + 0.3) == 3


def test_a_backend_answering_in_500ms_instead_of_5ms_is_degraded() -> None:
    assert _heartbeats_until_degraded(_learnt(0.005), 0.5) == 3


def test_one_spike_is_jitter_not_degradation() -> None:
    tracker = _learnt()
    tracker.observe(1.5)
    tracker.observe(LOOPBACK)
    tracker.observe(LOOPBACK)
    assert not tracker.degraded


def test_it_recovers_when_round_trips_come_back() -> None:
    tracker = _learnt()
    _heartbeats_until_degraded(tracker, 0.4)
    for _ in range(3):
        tracker.observe(LOOPBACK)
    assert not tracker.degraded


def test_the_degradation_does_not_poison_its_own_baseline() -> None:
    tracker = _learnt()
    for _ in range(100):
        tracker.observe(0.4)
    assert tracker.degraded
    assert tracker.baseline is not None and tracker.baseline < 0.01


def test_a_permanent_change_is_learnt_slowly_not_never() -> None:
    tracker = _learnt(samples=120)
    policy = tracker.policy
    heartbeats = policy.baseline_samples * policy.admit_every
    for _ in range(heartbeats):
        tracker.observe(0.4)
    assert not tracker.degraded
    assert tracker.baseline == 0.4


def test_no_judgement_before_a_baseline_exists() -> None:
    tracker = _tracker()
    for _ in range(tracker.policy.warmup - 1):
        tracker.observe(5.0)
    assert tracker.baseline is None and not tracker.degraded


def test_an_absolute_threshold_judges_from_the_first_samples() -> None:
    tracker = _tracker(threshold_seconds=0.2)
    assert _heartbeats_until_degraded(tracker, 0.25) == 3


def test_losing_a_share_of_heartbeats_is_degraded_without_any_slow_answer() -> None:
    tracker = _learnt()
    changed = [tracker.lost(1) or tracker.observe(LOOPBACK) for _ in range(2)]
    assert not tracker.degraded and not any(changed)
    assert tracker.lost(1)  # 3 of the last 10: the default share
    assert tracker.degraded
    assert "3 of the last 10 heartbeats lost" in tracker.detail()
    for _ in range(7):
        tracker.observe(LOOPBACK)
    assert not tracker.degraded


def test_a_new_connection_ends_a_degradation_but_keeps_the_baseline() -> None:
    tracker = _learnt()
    _heartbeats_until_degraded(tracker, 0.4)
    assert tracker.new_connection() is True
    assert not tracker.degraded and tracker.baseline == LOOPBACK


def test_the_detail_says_what_it_was_judged_against() -> None:
    tracker = _learnt()
    _heartbeats_until_degraded(tracker, 0.4)
    assert tracker.detail() == (
        "median RTT 0.400s of the last 5 (baseline 0.001s, threshold 0.101s)"
    )
