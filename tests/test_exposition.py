"""The sliced /metrics render is byte for byte what prometheus_client renders."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from t3probe.clock import SystemClock
from t3probe.config import build_config
from t3probe.exposition import render
from t3probe.metrics import ProbeMetrics
from t3probe.reasons import Classified, Reason
from t3probe.recorder import Recorder


def _busy_registry(legs: int) -> CollectorRegistry:
    config = build_config(
        {
            "listen": "127.0.0.1:0",
            "legs": [
                {
                    "name": f"l{i}",
                    "kind": "websocket",
                    "url": f"wss://h{i}.test/ws",
                    "segments": ["s"],
                }
                for i in range(legs)
            ],
        }
    )
    registry = CollectorRegistry()
    recorder = Recorder(config, ProbeMetrics(registry, config), SystemClock(), lambda _: None)
    for i, leg in enumerate(config.legs):
        recorder.leg_up(leg.name)
        recorder.observe_rtt(leg.name, 0.001 * i)
        recorder.observe_connect_phase(leg.name, "tls", 0.01)
        if i % 3 == 0:
            recorder.leg_down(leg.name, Classified(Reason.RESET, "x"), 5.0)
    recorder.refresh_verdict()
    return registry


@pytest.mark.parametrize("chunk", [1, 7, 500])
async def test_sliced_render_equals_generate_latest(chunk: int) -> None:
    registry = _busy_registry(40)
    # *_created series included (the library default): they must not be split.
    sliced = await render(registry, chunk_samples=chunk, slice_seconds=0.0)
    assert _steady(sliced) == _steady(generate_latest(registry))


def _steady(text: bytes) -> list[bytes]:
    # The process collector reads CPU time and memory afresh on every render.
    return [line for line in text.split(b"\n") if not line.startswith(b"process_")]


async def test_the_loop_runs_between_slices() -> None:
    registry = _busy_registry(40)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await render(registry, chunk_samples=10, slice_seconds=0.0)
    task.cancel()
    assert ticks - before > 10
