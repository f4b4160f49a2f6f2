"""Several connections of a leg dropping within an interval are one burst."""

from __future__ import annotations

from t3probe.bursts import BurstTracker
from t3probe.reasons import Reason


def test_drops_within_the_interval_are_one_burst_once_it_is_over() -> None:
    tracker = BurstTracker(interval=1.0)
    tracker.drop("lb", 4, 0, Reason.RESET, 10.0)
    tracker.drop("lb", 4, 2, Reason.RESET, 10.2)
    tracker.drop("lb", 4, 3, Reason.CLOSED_WITHOUT_FRAME, 10.4)
    assert tracker.due(10.9) == []  # still open: more may follow
    [(leg, burst)] = tracker.due(11.0)
    assert (leg, burst.dropped, burst.of, burst.reason) == ("lb", 3, 4, Reason.RESET)
    assert round(burst.interval, 3) == 0.4
    assert burst.detail() == (
        "3 of 4 connections dropped within 0.400s (reset x2, closed_without_frame x1)"
    )
    assert tracker.due(20.0) == []  # told once


def test_a_lone_drop_and_a_single_connection_leg_are_no_burst() -> None:
    tracker = BurstTracker(interval=1.0)
    tracker.drop("lb", 4, 1, Reason.RESET, 10.0)
    tracker.drop("lb", 4, 1, Reason.RESET, 10.5)  # the same connection again
    tracker.drop("solo", 1, 0, Reason.RESET, 10.0)
    assert tracker.due(12.0) == []


def test_a_drop_after_the_interval_opens_a_new_one() -> None:
    tracker = BurstTracker(interval=1.0)
    tracker.drop("lb", 2, 0, Reason.RESET, 10.0)
    assert tracker.due(11.5) == []
    tracker.drop("lb", 2, 1, Reason.RESET, 11.6)
    tracker.drop("lb", 2, 0, Reason.RESET, 11.7)
    [(_, burst)] = tracker.due(13.0)
    assert (burst.dropped, burst.first_at) == (2, 11.6)
