"""Failure modes found in review: each would have blamed the wrong party or hidden a cause."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from t3probe.config_file import ConfigError, load_config
from t3probe.daemon import Probe
from t3probe.linewriter import LineWriter
from t3probe.reasons import Classified, Reason
from t3probe.supervisor import blame_own_stall
from tests.conftest import TIME_UNIT
from tests.harness import Peer, leg, probe_config, running_probe


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = await Peer().start()
    yield server
    await server.stop()


def test_any_path_failure_during_the_probes_own_stall_is_probe_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = probe_config([leg("ws", "ws://127.0.0.1:9/probe/ws")])
    probe = Probe(config, registry=CollectorRegistry(), emit_line=lambda line: None)
    _, ctx = probe._make_leg(config.legs[0])
    reset = Classified(Reason.RESET, "peer gave up on us")
    monkeypatch.setattr(ctx.lag, "max_lag_within", lambda seconds: 0.0)
    assert blame_own_stall(reset, ctx).reason is Reason.RESET
    monkeypatch.setattr(ctx.lag, "max_lag_within", lambda seconds: 5.0)
    assert blame_own_stall(reset, ctx).reason is Reason.PROBE_STALL
    dns = Classified(Reason.DNS_FAILED, "resolver down")
    assert blame_own_stall(dns, ctx).reason is Reason.DNS_FAILED


async def test_a_hung_system_resolver_is_dns_failed_not_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def hang(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3)
        raise socket.gaierror(socket.EAI_AGAIN, "gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    config = probe_config(
        [leg("named", "ws://backend.t3probe.test:9/probe/ws")], connect_timeout_seconds=0.5
    )
    async with running_probe(config) as probe:
        started = time.monotonic()
        down = await probe.wait_for("named", "down")
        assert down.reason is Reason.DNS_FAILED
        assert time.monotonic() - started < 1.5 * TIME_UNIT
        assert probe.metric("t3probe_dns_failures_total", leg="named", reason="timeout")


def test_doh_servers_must_fit_inside_the_connect_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connect_timeout_seconds: 1\n"
        "legs: [{name: a, kind: websocket, url: 'wss://x.test/', segments: [s],"
        " resolver: {kind: doh, servers: ['https://127.0.0.1/q', 'https://127.0.0.2/q'],"
        " timeout_seconds: 0.5}}]\n"
    )
    with pytest.raises(ConfigError, match=r"legs\[0\].resolver: 2 DoH servers"):
        load_config(path)


async def test_a_broken_stdout_never_looks_like_a_network_fault(peer: Peer) -> None:
    def broken_pipe(line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    probe = Probe(config, registry=CollectorRegistry(), emit_line=broken_pipe)
    await probe.start()
    try:
        await asyncio.sleep(0.6 * TIME_UNIT)
        assert probe.registry.get_sample_value("t3probe_connected", {"leg": "ws"}) == 1
        assert not [e for e in probe.recorder.events.since(None) if e.kind == "down"]
    finally:
        await probe.stop()


def test_line_writer_drops_rather_than_blocks_and_survives_a_closed_stream() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream, capacity=4)
    writer("one")
    writer.close()
    assert stream.getvalue() == "one\n"
    closed = io.StringIO()
    closed.close()
    broken = LineWriter(closed, capacity=4)
    for index in range(100):
        broken(f"line {index}")  # must neither raise nor block
    broken.close()
    assert broken.dropped > 0


async def test_a_close_right_after_upgrade_keeps_its_code_and_backs_off(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/close-now/1008")],
        backoff_initial_seconds=0.1,
        backoff_max_seconds=1.0,
    )
    async with running_probe(config) as probe:
        await asyncio.sleep(2.0)
    downs = [e for e in probe.events if e.kind == "down"]
    assert downs, "the peer's close was never seen"
    assert all(e.reason is Reason.CLOSED_BY_PEER and e.close_code == 1008 for e in downs), [
        (e.reason, e.close_code, e.detail) for e in downs
    ]
    # 0.1, 0.2, 0.4, 0.8 s...: a handful of attempts, not one every 0.1 s.
    assert len(downs) <= 8


def test_an_unloadable_ca_file_fails_the_config_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "legs: [{name: a, kind: websocket, url: 'wss://x.test/', segments: [s],"
        f" ca_file: '{tmp_path / 'missing.pem'}'}}]\n"
    )
    with pytest.raises(ConfigError, match=r"legs\[0\].ca_file: cannot load CA file"):
        load_config(path)


def test_environment_overrides_are_named_when_the_config_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T3PROBE_HEARTBEAT_SECONDS", "abc")
    path = tmp_path / "c.yaml"
    path.write_text("legs: [{name: a, kind: http, url: 'http://127.0.0.1:1/', segments: [s]}]\n")
    with pytest.raises(ConfigError, match="environment overrides in effect: T3PROBE_HEARTBEAT"):
        load_config(path)
