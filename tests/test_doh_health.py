"""Which DoH servers a lookup asks: back-off after a failure, the order, the state sink."""

from __future__ import annotations

from t3probe.resolvers.dohhealth import MAX_BACKOFF_FACTOR, ServerHealth

A, B, C = "https://a.test/q", "https://b.test/q", "https://c.test/q"


def _health(
    servers: list[str], backoff: float = 10.0
) -> tuple[ServerHealth, list[tuple[str, bool]]]:
    seen: list[tuple[str, bool]] = []
    health = ServerHealth(
        servers, backoff_seconds=backoff, on_change=lambda s, up: seen.append((s, up))
    )
    return health, seen


def test_config_order_while_all_are_up() -> None:
    health, _ = _health([A, B, C])
    assert health.order(0.0) == [A, B, C]


def test_a_failed_server_sits_out_its_back_off_then_is_asked_again() -> None:
    health, seen = _health([A, B])
    health.failed(A, 100.0, "timeout")
    assert health.order(100.0) == [B]
    assert health.order(109.9) == [B]
    assert health.order(110.0) == [A, B]
    assert seen == [(A, False)]


def test_the_back_off_doubles_with_each_failure_in_a_row_up_to_the_cap() -> None:
    health, _ = _health([A, B])
    waits = []
    for _ in range(6):
        health.failed(A, 0.0, "timeout")
        waits.append(health.snapshot()[0].retry_at)
    assert waits == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]
    assert MAX_BACKOFF_FACTOR == 8
    health.answered(A, "HTTP/2")
    health.failed(A, 0.0, "timeout")
    assert health.snapshot()[0].retry_at == 10.0


def test_when_all_sit_out_the_one_due_first_is_asked_alone() -> None:
    health, _ = _health([A, B, C])
    health.failed(A, 0.0, "timeout")
    health.failed(A, 0.0, "timeout")  # due at 20
    health.failed(B, 5.0, "timeout")  # due at 15
    health.failed(C, 3.0, "timeout")  # due at 13
    assert health.order(12.0) == [C]  # nobody is due: the soonest, C, alone
    assert health.order(16.0) == [B, C]  # due ones, in config order
    assert health.order(20.0) == [A, B, C]


def test_no_back_off_means_a_failed_server_is_asked_at_once() -> None:
    health, _ = _health([A, B], backoff=0.0)
    health.failed(A, 50.0, "timeout")
    assert health.order(50.0) == [A, B]


def test_answered_restores_the_server_and_keeps_its_http_version() -> None:
    health, seen = _health([A])
    health.answered(A, "HTTP/2")
    health.failed(A, 0.0, "protocol_error: ...")
    status = health.snapshot()[0]
    assert (status.up, status.failures, status.last_error) == (False, 1, "protocol_error: ...")
    health.answered(A, "")  # a negative answer carries no version: the last one stays
    status = health.snapshot()[0]
    assert (status.up, status.failures, status.http_version) == (True, 0, "HTTP/2")
    assert seen == [(A, True), (A, False), (A, True)]


def test_a_server_listed_twice_is_one_server() -> None:
    health, _ = _health([A, B, A])
    assert health.order(0.0) == [A, B]
