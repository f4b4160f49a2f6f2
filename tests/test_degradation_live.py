"""Degradation end to end: a real probe against a loopback peer that slows down or
leaves heartbeats unanswered, below the watchdog (so nothing ever drops)."""

from __future__ import annotations

import time

from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, RunningProbe, eventually, leg, probe_config, running_probe


async def _learn_baseline(probe: RunningProbe, name: str) -> None:
    # The default warm-up is five answered heartbeats.
    await probe.wait_for(name, "up")
    await eventually(
        lambda: (probe.metric("t3probe_rtt_seconds_count", leg=name) or 0) >= 6,
        within=5 * TIME_UNIT,
    )


async def test_a_slowed_websocket_leg_is_degraded_then_recovered_without_a_drop(
    peer: Peer,
) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await _learn_baseline(probe, "ws")
        assert probe.probe.recorder.refresh_verdict().verdict == "infra_clean"
        # 150 ms late: below the 200 ms heartbeat and the 600 ms watchdog.
        peer.echo_delay = 0.15 * TIME_UNIT
        degraded = await probe.wait_for("ws", "degraded")
        assert degraded.detail.startswith("median RTT"), degraded.detail
        assert probe.metric("t3probe_leg_degraded", leg="ws") == 1
        verdict = probe.probe.recorder.refresh_verdict()
        assert (verdict.verdict, verdict.suspects, verdict.degraded) == (
            "degraded",
            ("ws_path",),
            ("ws_path",),
        )
        assert probe.metric("t3probe_segment_degraded", segment="ws_path") == 1
        assert probe.probe.recorder.verdict_json()["legs"]["ws"]["status"] == "degraded"
        peer.echo_delay = 0.0
        recovered = await probe.wait_for("ws", "recovered")
        assert probe.metric("t3probe_leg_degraded", leg="ws") == 0
        # Slowness counts for the attribution window after, like a drop does.
        assert probe.probe.recorder.refresh_verdict().verdict == "degraded"
        await eventually(
            lambda: probe.probe.recorder.refresh_verdict().verdict == "infra_clean",
            within=3 * config.attribution_window_seconds,
        )
        assert time.time() - recovered.at >= config.attribution_window_seconds * 0.9
        assert probe.probe.recorder.refresh_verdict().degraded == ()
        assert [e.kind for e in probe.events] == ["up", "degraded", "recovered"]


async def test_unanswered_heartbeats_are_counted_and_degrade_the_leg(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await _learn_baseline(probe, "ws")
        peer.skip_every = 2
        degraded = await probe.wait_for("ws", "degraded")
        assert "heartbeats lost" in degraded.detail, degraded.detail
        assert (probe.metric("t3probe_heartbeats_lost_total", leg="ws") or 0) >= 3
        assert not [e for e in probe.events if e.kind == "down"]


async def test_a_slow_backend_degrades_its_http_leg(peer: Peer) -> None:
    config = probe_config([leg("backend", f"http://127.0.0.1:{peer.port}/ok", kind="http")])
    async with running_probe(config) as probe:
        await _learn_baseline(probe, "backend")
        peer.answer_delay = 0.15 * TIME_UNIT
        await probe.wait_for("backend", "degraded")
        verdict = probe.probe.recorder.refresh_verdict()
        assert (verdict.verdict, verdict.suspects) == ("degraded", ("backend_path",))
