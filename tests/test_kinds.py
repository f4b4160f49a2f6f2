"""Leg and resolver kinds: one registry each, budgets computed once, unknown kinds loud."""

from __future__ import annotations

from typing import get_args

import pytest

from t3probe.config import (
    LEG_CONFIGS,
    LEG_KINDS,
    RESOLVER_KINDS,
    AnyLegConfig,
    HttpLegConfig,
    LegConfig,
    WebSocketLegConfig,
    build_config,
)
from t3probe.legs.budget import SYSTEM_RESOLVER_SHARE, LegBudget, timeout_failure
from t3probe.legs.http import HttpLeg
from t3probe.legs.registry import LEG_FACTORIES
from t3probe.legs.websocket import WebSocketLeg
from t3probe.reasons import Reason
from t3probe.resolvers.factory import RESOLVER_BUILDERS
from tests.support.harness import leg, probe_config


def test_every_config_kind_has_exactly_one_implementation() -> None:
    assert set(LEG_FACTORIES) == set(LEG_KINDS) == {"websocket", "http"}
    assert LEG_FACTORIES["websocket"] is WebSocketLeg and LEG_FACTORIES["http"] is HttpLeg
    assert set(RESOLVER_BUILDERS) == set(RESOLVER_KINDS) == {"system", "pinned", "doh"}


def test_the_parsed_and_the_typed_leg_unions_list_the_same_classes() -> None:
    # The typed union is the one to edit; the parsed one and the kind table follow it.
    assert set(get_args(AnyLegConfig)) == {WebSocketLegConfig, HttpLegConfig}
    assert set(get_args(get_args(LegConfig)[0])) == set(get_args(AnyLegConfig))
    assert set(LEG_CONFIGS.values()) == set(get_args(AnyLegConfig))


def test_build_config_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3PROBE_HEARTBEAT_SECONDS", "7")
    monkeypatch.setenv("T3PROBE_LEGS", "not json")
    config = build_config(
        {"legs": [{"name": "a", "kind": "http", "url": "http://127.0.0.1:1/", "segments": ["s"]}]}
    )
    assert config.heartbeat_seconds == 10.0


def test_budget_of_a_system_resolved_leg() -> None:
    config = probe_config([leg("ws", "ws://127.0.0.1:1/probe/ws")])
    budget = LegBudget.of(config, config.legs[0])
    connect = config.effective_connect_timeout
    assert budget.connect == connect
    assert budget.dns == pytest.approx(SYSTEM_RESOLVER_SHARE * connect)
    assert budget.watchdog == config.watchdog_seconds


def test_budget_of_a_doh_leg_is_its_servers_timeouts() -> None:
    resolver = {"kind": "doh", "servers": ["https://127.0.0.1:1/q"] * 2, "timeout_seconds": 0.2}
    config = probe_config([leg("ws", "wss://t3.lab.test/probe/ws", resolver=resolver)])
    assert LegBudget.of(config, config.legs[0]).dns == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        ("dns", Reason.DNS_FAILED),
        ("tcp", Reason.CONNECT_TIMEOUT),
        ("tls", Reason.CONNECT_TIMEOUT),
        ("upgrade", Reason.CONNECT_TIMEOUT),
        ("session", Reason.RTT_TIMEOUT),
    ],
)
def test_a_timeout_means_what_its_phase_says(phase: str, reason: Reason) -> None:
    failure = timeout_failure(phase, 1.5, "GET")  # type: ignore[arg-type]
    assert failure.reason is reason
    assert f"phase {phase}" in failure.detail and "1.5s" in failure.detail
