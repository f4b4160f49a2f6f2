"""The WebSocket leg's heartbeat bookkeeping, tested without a socket."""

from __future__ import annotations

from t3probe.legs.heartbeat import PAYLOAD_PREFIX, Heartbeats


def test_an_echo_of_an_outstanding_ping_gives_its_round_trip() -> None:
    beats = Heartbeats(heartbeat_seconds=1.0, watchdog_seconds=2.0)
    beats.start(10.0)
    ping = beats.next_ping(10.0)
    assert beats.on_text(ping, 10.25) == 0.25
    assert beats.deadline() == 12.25


def test_foreign_duplicate_and_garbled_texts_are_not_echoes() -> None:
    beats = Heartbeats(1.0, 2.0)
    beats.start(0.0)
    ping = beats.next_ping(0.0)
    assert beats.on_text("hello", 0.1) is None
    assert beats.on_text(f"{PAYLOAD_PREFIX}x1", 0.1) is None
    assert beats.on_text(f"{PAYLOAD_PREFIX}999", 0.1) is None
    assert beats.deadline() == 2.0  # nothing answered: the watchdog did not move
    assert beats.on_text(ping, 0.2) is not None
    assert beats.on_text(ping, 0.3) is None  # the same echo twice counts once


def test_an_echo_overtakes_older_pings() -> None:
    beats = Heartbeats(1.0, 2.0)
    beats.start(0.0)
    first = beats.next_ping(0.0)
    second = beats.next_ping(1.0)
    assert beats.on_text(second, 1.5) == 0.5
    assert beats.outstanding == 0
    assert beats.on_text(first, 1.6) is None


def test_outstanding_pings_stay_bounded_by_the_watchdog() -> None:
    beats = Heartbeats(heartbeat_seconds=0.5, watchdog_seconds=2.0)
    beats.start(0.0)
    for tick in range(100):
        beats.next_ping(tick * 0.5)
    assert beats.outstanding == int(2.0 / 0.5) + 2


def test_a_new_connection_forgets_the_old_pings_but_not_the_sequence() -> None:
    beats = Heartbeats(1.0, 2.0)
    beats.start(0.0)
    old = beats.next_ping(0.0)
    beats.start(5.0)
    assert beats.outstanding == 0
    assert beats.on_text(old, 5.1) is None  # a late echo from the old connection
    assert beats.next_ping(5.0) != old
    assert beats.deadline() == 7.0


def test_heartbeats_overtaken_by_a_newer_echo_are_counted_lost_once() -> None:
    beats = Heartbeats(heartbeat_seconds=1.0, watchdog_seconds=5.0)
    beats.start(0.0)
    first, _, third = (beats.next_ping(float(t)) for t in range(3))
    assert beats.on_text(third, 3.5) == 1.5
    assert beats.take_lost() == 2
    assert beats.take_lost() == 0
    # The first heartbeat's echo arriving after the third's matches nothing.
    assert beats.on_text(first, 3.6) is None
    assert beats.take_lost() == 0
