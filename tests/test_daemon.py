"""The daemon as operators run it: HTTP surface, exposition, stdout, shutdown, self-distrust."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from t3probe.daemon import Probe
from t3probe.dialgate import DialGate
from t3probe.legs.base import Leg, LegContext
from t3probe.reasons import Classified, Reason
from t3probe.supervisor import Backoff, blame_own_stall, supervise
from tests.support.env import TIME_UNIT
from tests.support.harness import (
    Peer,
    eventually,
    every_kind_config,
    free_port,
    leg,
    probe_config,
    running_probe,
)


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_http_surface(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/close/4000")])
    async with running_probe(config) as probe:
        base = f"http://127.0.0.1:{probe.probe.port}"
        await probe.wait_for("ws", "down")
        assert (await _get(f"{base}/healthz"))[0] == 200
        assert (await _get(f"{base}/readyz"))[0] == 200
        status, body = await _get(f"{base}/events")
        events = json.loads(body)["events"]
        assert (
            status == 200 and events[0]["kind"] == "up" and events[1]["reason"] == "closed_by_peer"
        )
        later = json.loads((await _get(f"{base}/events?since={events[1]['at']}"))[1])["events"]
        assert all(e["at"] > events[1]["at"] for e in later)
        assert (await _get(f"{base}/events?since=yesterday"))[0] == 400
        verdict = json.loads((await _get(f"{base}/verdict"))[1])
        assert verdict["verdict"] in ("suspect", "infra_clean")
        assert set(verdict["legs"]["ws"]) >= {"up", "reason", "since"}
        status, metrics = await _get(f"{base}/metrics")
        assert 't3probe_disconnects_total{leg="ws",reason="closed_by_peer"}' in metrics
        assert 't3probe_disconnects_total{leg="ws",reason="dns_failed"} 0.0' in metrics


async def test_healthz_stays_ok_while_every_leg_is_down() -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "down")
        assert (await _get(f"http://127.0.0.1:{probe.probe.port}/healthz"))[0] == 200


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


@pytest.mark.e2e
async def test_exposition_passes_promtool_check_metrics(peer: Peer) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: `make test` installs Debian's prometheus when root")
    # A DoH leg whose server refuses: its per-server gauge is in the exposition too.
    config = every_kind_config(peer)
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await probe.wait_for("doh", "down")
        _, exposition = await _get(f"http://127.0.0.1:{probe.probe.port}/metrics")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "t3probe_connected",
        "t3probe_disconnects_total",
        "t3probe_rtt_seconds_bucket",
        "t3probe_connection_age_seconds_bucket",
        "t3probe_last_disconnect_timestamp_seconds",
        "t3probe_connect_duration_seconds_bucket",
        "t3probe_segment_suspected",
        "t3probe_event_loop_lag_seconds_bucket",
        "t3probe_leg_info",
        "t3probe_build_info",
        "t3probe_config_last_reload_successful",
        "process_start_time_seconds",
        "python_info",
        "t3probe_doh_server_up",
    ):
        assert f"\n{name}" in exposition, name
    assert 't3probe_doh_server_up{leg="doh",server="https://127.0.0.1:' in exposition


async def test_a_stalled_probe_blames_itself_not_the_path(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/silent")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        # Freeze the loop itself, as swap-thrashing the probe's host would.
        time.sleep(config.watchdog_seconds * 1.5)  # noqa: ASYNC251 - the stall is the point
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.PROBE_STALL
        assert probe.probe.recorder.refresh_verdict().verdict == "probe_unhealthy"
        assert (probe.metric("t3probe_event_loop_lag_seconds_count") or 0) > 0


def test_any_path_failure_during_the_probes_own_stall_is_probe_stall() -> None:
    stall_seconds = probe_config([leg("ws", "ws://127.0.0.1:9/probe/ws")]).effective_probe_stall
    reset = Classified(Reason.RESET, "peer gave up on us")
    assert blame_own_stall(reset, 0.0, stall_seconds).reason is Reason.RESET
    assert blame_own_stall(reset, 5.0, stall_seconds).reason is Reason.PROBE_STALL
    dns = Classified(Reason.DNS_FAILED, "resolver down")
    assert blame_own_stall(dns, 5.0, stall_seconds).reason is Reason.DNS_FAILED


class _BuggyLeg:
    """A leg kind with a bug: it must become internal_error and restart, not spread."""

    def __init__(self) -> None:
        from t3probe.legs.base import SessionProgress

        self.progress = SessionProgress()
        self.sessions = 0

    async def run_session(self) -> None:
        self.sessions += 1
        raise KeyError("bug in a leg")

    async def close(self) -> None:
        return None


async def test_a_buggy_leg_is_internal_error_and_restarts(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    config = probe_config(
        [
            leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws"),
            leg("buggy", f"ws://127.0.0.1:{peer.port}/probe/ws"),
        ]
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        legs: tuple[tuple[Leg, LegContext], ...] = probe.probe.legs
        ctx = legs[1][1]
        buggy = _BuggyLeg()
        task = asyncio.create_task(supervise(buggy, ctx, random.Random(1)))
        try:
            down = await probe.wait_for("buggy", "down")
            assert down.reason is Reason.INTERNAL_ERROR
            await asyncio.sleep(0.5 * TIME_UNIT)
            assert buggy.sessions >= 2  # restarted
        finally:
            task.cancel()
        assert "Traceback" in caplog.text or "KeyError" in caplog.text
        assert probe.metric("t3probe_connected", leg="ws") == 1
        assert (await _get(f"http://127.0.0.1:{probe.probe.port}/healthz"))[0] == 200


def test_backoff_is_capped_and_jittered() -> None:
    import random

    backoff = Backoff(0.5, 8.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(60)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays[10:]) <= 8.0 and min(delays[10:]) >= 4.0
    assert len(set(delays)) > 50
    backoff.reset()
    assert backoff.next_delay() <= 0.5


async def test_sigterm_closes_with_1001_counts_no_drop_and_exits_0(
    peer: Peer, tmp_path: Path
) -> None:
    port = free_port()
    config_path = tmp_path / "probe.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "heartbeat_seconds": 0.2,
                "watchdog_seconds": 1.0,
                "probe_stall_seconds": 0.5,
                "legs": [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")],
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "t3probe",
        "run",
        "--config",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "T3PROBE_LOOPBACK_ONLY": "1"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10 * TIME_UNIT):
            first = json.loads(await process.stdout.readline())
        assert (first["leg"], first["kind"]) == ("ws", "up")
        _, metrics = await _get(f"http://127.0.0.1:{port}/metrics")
        assert 't3probe_connected{leg="ws"} 1.0' in metrics
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            rest, _ = await process.communicate()
        assert process.returncode == 0
        assert time.monotonic() - started < 5
        assert b'"kind":"down"' not in rest
        await asyncio.sleep(0.1)
        assert peer.close_codes == [1001]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_with_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_path = tmp_path / "probe.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{port}",
                    "legs": [leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")],
                }
            )
        )
        result = subprocess.run(
            [sys.executable, "-m", "t3probe", "run", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    # A port this host cannot bind is a config error: exit 2, naming the key.
    assert result.returncode == 2
    assert f"listen: cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_a_stall_that_ended_before_echoes_resumed_exonerates_nothing_later(
    peer: Peer,
) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")],
        watchdog_seconds=2.0 * TIME_UNIT,
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        # A stall longer than probe_stall_seconds but shorter than the watchdog: no drop.
        time.sleep(config.effective_probe_stall * 2.25)  # noqa: ASYNC251 - the stall is the point
        rtt_count = probe.metric("t3probe_rtt_seconds_count", leg="ws") or 0
        await eventually(
            lambda: (probe.metric("t3probe_rtt_seconds_count", leg="ws") or 0) >= rtt_count + 2,
            within=2 * TIME_UNIT,
        )
        for socket in peer.sockets:
            await socket.close(code=1011, message=b"real fault")
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.CLOSED_BY_PEER, down.detail


async def test_a_real_fault_after_a_long_stall_convicts_once_echoes_have_resumed(
    peer: Peer,
) -> None:
    # The window is long, so the stall's drop is still inside it when the real fault
    # comes: only the echoes since then may tell the two apart.
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")],
        attribution_window_seconds=30.0,
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        time.sleep(config.watchdog_seconds * 1.5)  # noqa: ASYNC251 - the stall is the point
        stalled = await probe.wait_for("ws", "down")
        assert stalled.reason is Reason.PROBE_STALL
        assert probe.probe.recorder.refresh_verdict().verdict == "probe_unhealthy"
        back = len(probe.events)
        await probe.wait_for("ws", "up", after=back - 1)
        rtt_count = probe.metric("t3probe_rtt_seconds_count", leg="ws") or 0
        await eventually(
            lambda: (probe.metric("t3probe_rtt_seconds_count", leg="ws") or 0) >= rtt_count + 1,
            within=2 * TIME_UNIT,
        )
        assert probe.probe.recorder.refresh_verdict().verdict == "infra_clean"
        for socket in peer.sockets:
            await socket.close(code=1011, message=b"real fault")
        down = await probe.wait_for("ws", "down", after=back)
        assert down.reason is Reason.CLOSED_BY_PEER, down.detail
        verdict = probe.probe.recorder.refresh_verdict()
        assert (verdict.verdict, verdict.suspects) == ("suspect", ("ws_path",))


async def test_verdict_dates_an_outage_from_its_drop_and_shows_no_stale_rtt() -> None:
    peer = await Peer().start()
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        base = f"http://127.0.0.1:{probe.probe.port}/verdict"

        def measured() -> bool:
            return probe.probe.recorder.verdict_json()["legs"]["ws"]["last_rtt_seconds"] is not None

        await eventually(measured, 5 * TIME_UNIT)
        await peer.stop()  # the drop, then every reconnect is refused: a new failure mode
        down = await probe.wait_for("ws", "down")
        changed = await probe.wait_for("ws", "reconnect_failed")
        assert changed.reason != down.reason
        state = json.loads((await _get(base))[1])["legs"]["ws"]
        assert state["reason"] == str(changed.reason)
        assert state["since"] == round(down.at, 3)
        # The RTT from before the drop says nothing about the path now.
        assert state["last_rtt_seconds"] is None
        assert down.last_rtt_seconds is not None  # the event keeps it: the RTT before the drop


class _CountingGate(DialGate):
    def __init__(self) -> None:
        super().__init__(time.monotonic, rate=1000.0, burst=1000)
        self.passed = 0

    async def acquire(self) -> None:
        self.passed += 1
        await super().acquire()


async def test_every_dial_and_redial_passes_the_dial_gate(peer: Peer) -> None:
    # /close/4000 accepts, then closes: each leg keeps dialling again.
    config = probe_config(
        [leg(f"ws{i}", f"ws://127.0.0.1:{peer.port}/close/4000") for i in range(3)]
    )
    gate = _CountingGate()
    probe = Probe(config, registry=CollectorRegistry(), emit_line=lambda _: None, dial_gate=gate)
    await probe.start()
    try:
        ups = 0

        def count_ups() -> bool:
            nonlocal ups
            ups = sum(1 for e in probe.recorder.events.since(None) if e.kind == "up")
            return ups >= 6

        await eventually(count_ups, 10 * TIME_UNIT)
        # Every session that came up was dialled through the gate, redials included.
        assert gate.passed >= ups >= 6
    finally:
        await probe.stop()


async def test_a_probe_that_freezes_gc_moves_its_legs_out_of_the_collector(peer: Peer) -> None:
    import gc

    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    before = gc.get_freeze_count()
    probe = Probe(config, registry=CollectorRegistry(), emit_line=lambda _: None, freeze_gc=True)
    await probe.start()
    try:
        assert gc.get_freeze_count() > before
        assert not gc.isenabled()  # no full collection during the ramp
        await eventually(gc.isenabled, 10 * TIME_UNIT)  # and back once it has settled
    finally:
        await probe.stop()
        gc.enable()
        gc.unfreeze()  # the test process goes on: give its objects back to the collector
