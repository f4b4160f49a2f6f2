"""Soak: thousands of connect/drop cycles leave nothing behind.

A WebSocket leg goes through the fault proxy to a peer that closes right after the first
frame, and an HTTP leg hits a backend answering 502, both with a near-zero backoff, so
each leg dies and reconnects hundreds of times a second. File descriptors, asyncio
tasks and RSS must plateau while it runs and return near the baseline once it stops.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

import psutil
import pytest

from t3probe.lab.backend import SESSION_PATH, BackendServer
from t3probe.lab.faultproxy import FaultProxy
from t3probe.reasons import Reason
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, leg, probe_config, running_probe

TARGET_CYCLES = 2000
MIN_CYCLES = 1000  # "thousands" even on a slow machine
SOAK_DEADLINE_SECONDS = 30.0
WARM_CYCLES = 100
# Generous margins: allocators and aiohttp's caches settle in steps, leaks grow with N.
FD_MARGIN = 25
TASK_MARGIN = 30  # a leak over 2000 cycles would be thousands; one snapshot swings by ~12
RSS_MARGIN_BYTES = 40 * 1024 * 1024

pytestmark = pytest.mark.timeout(90)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def test_thousands_of_connect_drop_cycles_leak_nothing(
    peer: Peer, backend: BackendServer
) -> None:
    proxy = FaultProxy("127.0.0.1", 0, "127.0.0.1", peer.port, name="soak")
    await proxy.start()
    try:
        gc.collect()
        fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())
        config = probe_config(
            [
                leg("ws", f"ws://127.0.0.1:{proxy.port}/close/4000"),
                leg("http", f"http://127.0.0.1:{backend.port}{SESSION_PATH}", kind="http"),
            ],
            backoff_initial_seconds=0.001,
            backoff_max_seconds=0.002,
        )
        with backend.status(502):
            async with running_probe(config) as probe:
                drops = probe.probe.registry

                def ws_cycles() -> float:
                    value = drops.get_sample_value(
                        "t3probe_disconnects_total",
                        {"leg": "ws", "reason": Reason.CLOSED_BY_PEER.value},
                    )
                    return value or 0.0

                deadline = time.monotonic() + SOAK_DEADLINE_SECONDS * TIME_UNIT
                for _ in range(int(SOAK_DEADLINE_SECONDS * TIME_UNIT / 0.05)):
                    if ws_cycles() >= WARM_CYCLES:
                        break
                    await asyncio.sleep(0.05)
                gc.collect()
                fds_warm, tasks_warm, rss_warm = open_fds(), len(asyncio.all_tasks()), rss()
                peak_fds, peak_tasks = fds_warm, tasks_warm
                while ws_cycles() < TARGET_CYCLES and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    peak_fds = max(peak_fds, open_fds())
                    peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
                cycles = ws_cycles()
                http_requests = backend.request_count
                gc.collect()
                rss_after = rss()
                # Every cycle is a real drop, each with its reason; nothing is a bug.
                reasons = {e.reason for e in probe.events if e.kind == "down"}
                assert reasons <= {Reason.CLOSED_BY_PEER, Reason.HTTP_ERROR}, reasons
        assert cycles >= MIN_CYCLES, f"only {cycles:.0f} WebSocket cycles"
        assert http_requests >= MIN_CYCLES, f"only {http_requests} HTTP cycles"
        # While running: each cycle's sockets and tasks are released, not accumulated.
        assert peak_fds <= fds_warm + FD_MARGIN, (fds_warm, peak_fds)
        assert peak_tasks <= tasks_warm + TASK_MARGIN, (tasks_warm, peak_tasks)
        assert rss_after <= rss_warm + RSS_MARGIN_BYTES, (rss_warm, rss_after)
        # After the probe stops: back to where we started.
        for _ in range(int(100 * TIME_UNIT)):  # proxy state: polled, it has no event
            if not proxy.active_connections:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        gc.collect()
        assert proxy.active_connections == 0
        assert open_fds() <= fds_before + 5, (fds_before, open_fds())
        assert len(asyncio.all_tasks()) <= tasks_before + 2
    finally:
        await proxy.stop()
