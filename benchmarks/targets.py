"""The loopback targets the detection and RTT benchmarks share, and the tools probing them.

    echo (/probe/ws) <- ws proxy   <- t3probe websocket leg, naive websocket loop
    backend (HTTP)   <- http proxy <- t3probe http leg, naive HTTP loop, blackbox_exporter

Every tool goes through the same fault proxy, so one injected fault reaches all of them
at the same instant and they are timed against the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks.blackbox import BlackboxExporter, http_module
from benchmarks.common import LOOPBACK
from benchmarks.naive import NaiveStats, naive_http_loop, naive_websocket_loop
from t3probe.config import ProbeConfig, build_config
from t3probe.daemon import Probe
from t3probe.echo import EchoLimits, EchoServer, serve_echo
from t3probe.lab.backend import SESSION_PATH, BackendServer, serve_backend
from t3probe.lab.faultproxy import FaultProxy

BLACKBOX_MODULE = "http_2xx"


@dataclass
class Targets:
    echo: EchoServer
    ws_proxy: FaultProxy
    backend: BackendServer
    http_proxy: FaultProxy

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.ws_proxy.port}/probe/ws"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_proxy.port}{SESSION_PATH}"


@contextlib.asynccontextmanager
async def loopback_targets() -> AsyncIterator[Targets]:
    async with contextlib.AsyncExitStack() as stack:
        # Generous limits: the benchmark's own tools must never trip the abuse caps.
        echo = await serve_echo(
            LOOPBACK, 0, EchoLimits(idle_timeout_seconds=3600, messages_per_second=100, burst=200)
        )
        stack.push_async_callback(echo.stop)
        ws_proxy = FaultProxy(LOOPBACK, 0, LOOPBACK, echo.port, name="ws")
        await ws_proxy.start()
        stack.push_async_callback(ws_proxy.stop)
        backend = await serve_backend(LOOPBACK, 0)
        stack.push_async_callback(backend.stop)
        http_proxy = FaultProxy(LOOPBACK, 0, LOOPBACK, backend.port, name="http")
        await http_proxy.start()
        stack.push_async_callback(http_proxy.stop)
        yield Targets(echo, ws_proxy, backend, http_proxy)


def probe_config(targets: Targets, heartbeat: float, watchdog: float) -> ProbeConfig:
    return build_config(
        {
            "listen": f"{LOOPBACK}:0",
            "heartbeat_seconds": heartbeat,
            "watchdog_seconds": watchdog,
            "probe_stall_seconds": watchdog / 2,
            "attribution_window_seconds": watchdog + heartbeat,
            # The lab's backoff: a quick reconnect keeps the repetitions short.
            "backoff_initial_seconds": 0.2 * heartbeat,
            "backoff_max_seconds": heartbeat,
            "legs": [
                {"name": "ws", "kind": "websocket", "url": targets.ws_url, "segments": ["ws"]},
                {"name": "http", "kind": "http", "url": targets.http_url, "segments": ["http"]},
            ],
        }
    )


@dataclass
class Tools:
    """Everything probing the targets, each tool's background tasks owned here."""

    probe: Probe
    naive_ws: NaiveStats
    naive_http: NaiveStats
    blackbox: BlackboxExporter | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(coro))


@contextlib.asynccontextmanager
async def running_tools(
    targets: Targets, heartbeat: float, watchdog: float, workdir: Path, with_blackbox: bool
) -> AsyncIterator[Tools]:
    probe = Probe(
        probe_config(targets, heartbeat, watchdog),
        registry=CollectorRegistry(),
        emit_line=lambda line: None,
    )
    blackbox = None
    if with_blackbox:
        blackbox = BlackboxExporter({BLACKBOX_MODULE: http_module(watchdog)}, workdir)
    tools = Tools(probe, NaiveStats(), NaiveStats(), blackbox)
    try:
        await probe.start()
        tools.spawn(naive_websocket_loop(targets.ws_url, heartbeat, watchdog, tools.naive_ws))
        tools.spawn(naive_http_loop(targets.http_url, heartbeat, watchdog, tools.naive_http))
        if blackbox is not None:
            await blackbox.start()
        yield tools
    finally:
        for task in tools.tasks:
            task.cancel()
        await asyncio.gather(*tools.tasks, return_exceptions=True)
        if blackbox is not None:
            await blackbox.stop()
        await probe.stop()
