"""Load on the probe's own HTTP surface must not look like a network fault.

Two storms against a ``python -m t3probe run`` child whose legs heartbeat on loopback:

* **metrics**: N WebSocket legs to one echo, M clients scraping ``/metrics`` back to back
  (in a process of their own, ``benchmarks/storm.py``) for a window;
* **events**: the ``/events`` buffer filled to ``event_buffer_size`` (legs to a server
  that closes every upgrade at once, flapping), then the server turns into an echo, the
  legs come up and stay up, and K clients page through the whole buffer by ``after_id``
  back to back for a window.

Reported per storm: false drops in the window (nothing is injected, so every drop is
one), ``/healthz`` answers (polled four times a second), the probe's event-loop lag
(p99 and the highest bucket hit, from its own histogram) and what the clients got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.common import (
    LOOPBACK,
    REPO_ROOT,
    ResourceWatch,
    bucket_delta,
    child_env,
    fmt_ms,
    fmt_num,
    free_port,
    histogram_buckets,
    histogram_max_bucket,
    histogram_quantile,
    parse_samples,
    print_table,
    stop_process,
    summary,
)
from benchmarks.probeproc import ProbeProcess
from t3probe.echo import EchoLimits, serve_echo
from t3probe.events import EventKind, EventLog, LegEvent
from t3probe.reasons import Reason
from t3probe.server import EVENTS_PAGE_MAX

PROBE_STALL_SECONDS = 1.0
LAG = "t3probe_event_loop_lag_seconds"
RTT = "t3probe_rtt_seconds"


@dataclass(frozen=True)
class HardeningOptions:
    metrics_legs: int = 200
    scrapers: int = 50
    metrics_seconds: float = 30.0
    event_levels: tuple[int, ...] = (1000, 10_000, 100_000)
    flappers: int = 300
    event_clients: int = 20
    events_seconds: float = 20.0
    fill_deadline_seconds: float = 240.0
    warmup_seconds: float = 3.0
    heartbeat: float = 1.0
    watchdog: float = 2.0
    up_deadline_seconds: float = 90.0


FULL = HardeningOptions()
QUICK = HardeningOptions(
    metrics_legs=20,
    scrapers=8,
    metrics_seconds=3.0,
    event_levels=(500,),
    flappers=20,
    event_clients=4,
    events_seconds=3.0,
    warmup_seconds=1.0,
)


def probe_config(
    legs: int, url: str, listen: str, options: HardeningOptions, buffer: int = 1000
) -> dict[str, Any]:
    return {
        "listen": listen,
        "heartbeat_seconds": options.heartbeat,
        "watchdog_seconds": options.watchdog,
        "probe_stall_seconds": PROBE_STALL_SECONDS,
        "attribution_window_seconds": options.watchdog + options.heartbeat,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.25,
        "event_buffer_size": buffer,
        "legs": [
            {"name": f"ws{i:05d}", "kind": "websocket", "url": url, "segments": ["lb", "dispatch"]}
            for i in range(legs)
        ],
    }


class HealthPoller:
    """``/healthz`` four times a second: what a kubelet's liveness probe would see."""

    def __init__(self, port: int) -> None:
        self._url = f"http://{LOOPBACK}:{port}/healthz"
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = time.monotonic()
                try:
                    async with session.get(self._url) as response:
                        await response.read()
                        self.statuses[str(response.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as err:
                    self.statuses[type(err).__name__] += 1
                self.latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.25)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return {"statuses": dict(self.statuses), "latency_seconds": summary(self.latencies)}


async def run_storm(url: str, clients: int, seconds: float, pages: bool) -> dict[str, Any]:
    """The clients, in a child process so that their parsing is not charged to us."""
    env = child_env()
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{env['PYTHONPATH']}"
    args = ["--clients", str(clients), "--seconds", str(seconds), *(["--pages"] if pages else [])]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.storm",
        url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(REPO_ROOT),
    )
    try:
        async with asyncio.timeout(seconds + 60):
            out, err = await process.communicate()
    finally:
        await stop_process(process)
    if process.returncode != 0:
        return {"error": err.decode(errors="replace")[-2000:]}
    result: dict[str, Any] = json.loads(out)
    return result


async def _scrape(probe: ProbeProcess, session: aiohttp.ClientSession) -> str:
    # Outside a storm a scrape is admitted; retry a few times in case one is still in flight.
    for _ in range(20):
        text, _ = await probe.metrics(session)
        if text.startswith("#"):
            return text
        await asyncio.sleep(0.25)
    raise RuntimeError("the probe refused every scrape")


async def measure(
    probe: ProbeProcess, url: str, clients: int, seconds: float, pages: bool
) -> dict[str, Any]:
    """One storm against a probe whose legs are all up; the window's figures."""
    drops_before = len(probe.downs)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        first = parse_samples(await _scrape(probe, session))
        watch = ResourceWatch(probe.pid)
        health = HealthPoller(probe.port)
        watch.start()
        health.start()
        if clients:
            clients_result = await run_storm(url, clients, seconds, pages)
        else:  # the quiet baseline: the same window without a storm
            await asyncio.sleep(seconds)
            clients_result = {}
        healthz = await health.stop()
        resources = await watch.finish()
        last = parse_samples(await _scrape(probe, session))
    lag = bucket_delta(histogram_buckets(last, LAG), histogram_buckets(first, LAG))
    rtt = bucket_delta(histogram_buckets(last, RTT), histogram_buckets(first, RTT))
    window_drops = probe.downs[drops_before:]
    return {
        "clients": clients_result,
        "healthz": healthz,
        "probe": resources,
        "loop_lag_p99_seconds": histogram_quantile(0.99, lag),
        "loop_lag_max_bucket_seconds": histogram_max_bucket(lag),
        # High while the lag is low: the echo side (or the machine) was slow, not the probe.
        "rtt_p99_seconds": histogram_quantile(0.99, rtt),
        "false_drops": len(window_drops),
        "false_drop_reasons": dict(Counter(str(d.get("reason")) for d in window_drops)),
    }


async def metrics_storm(options: HardeningOptions, workdir: Path) -> dict[str, Any]:
    legs = options.metrics_legs
    echo = await serve_echo(
        LOOPBACK,
        0,
        EchoLimits(
            max_connections=legs + 100,
            idle_timeout_seconds=3600,
            messages_per_second=50,
            burst=100,
        ),
    )
    port = free_port()
    url = f"ws://{LOOPBACK}:{echo.port}/probe/ws"
    probe = ProbeProcess(
        probe_config(legs, url, f"{LOOPBACK}:{port}", options), workdir / "metrics", port
    )
    result: dict[str, Any] = {"legs": legs, "scrapers": options.scrapers}
    try:
        await probe.start()
        if not await probe.wait_all_up(legs, time.monotonic() + options.up_deadline_seconds):
            return {**result, "error": f"only {len(probe.up)} of {legs} legs up"}
        await asyncio.sleep(options.warmup_seconds)
        metrics_url = f"http://{LOOPBACK}:{port}/metrics"
        result.update(
            await measure(probe, metrics_url, options.scrapers, options.metrics_seconds, False)
        )
        return result
    finally:
        result["exit_code"] = await probe.stop()
        await echo.stop()


def page_costs(buffer: int, repetitions: int = 20) -> dict[str, Any]:
    """What one /events answer blocks the probe's loop for, with a full buffer: finding
    the page (by id, by time, the newest) and joining its body. In process, synchronous."""
    log = EventLog(buffer)
    started_at = time.time() - buffer
    detail = "ClientConnectorError: ECONNREFUSED: Cannot connect to host 10.0.20.203:443 " * 2
    for index in range(buffer + 10):  # wrapped once, as a long-running probe's is
        reason = Reason.CONNECT_REFUSED if index % 2 else None
        kind: EventKind = "down" if index % 2 else "up"
        log.append(
            LegEvent(f"ws{index % 1000:05d}", kind, reason, started_at + index, detail=detail)
        )
    middle = log.since()[buffer // 2]
    cases: dict[str, Callable[[], tuple[list[LegEvent], bool]]] = {
        "after_id": lambda: log.after(middle.id, EVENTS_PAGE_MAX),
        "since": lambda: log.after_time(middle.at, EVENTS_PAGE_MAX),
        "newest": lambda: (log.newest(EVENTS_PAGE_MAX), False),
    }
    figures: dict[str, Any] = {"event_buffer_size": buffer}
    for name, find in cases.items():
        worst = 0.0
        for _ in range(repetitions):
            started = time.perf_counter()
            page, more = find()
            body = log.page_body(page, more)
            worst = max(worst, time.perf_counter() - started)
        figures[f"{name}_max_seconds"] = worst
    figures["page_bytes"] = len(body)
    started = time.perf_counter()
    log.since()
    figures["whole_buffer_copy_seconds"] = time.perf_counter() - started
    return figures


class Flapper:
    """A WebSocket server that closes every upgrade at once, until told to echo."""

    def __init__(self) -> None:
        self.flapping = True
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.flapping:
            with contextlib.suppress(ConnectionError):
                await ws.close(code=4000, message=b"flap")
            return ws
        with contextlib.suppress(ConnectionError):  # a leg that dropped meanwhile
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await ws.send_str(message.data)
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/probe/ws", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _newest_id(session: aiohttp.ClientSession, port: int) -> int:
    url = f"http://{LOOPBACK}:{port}/events"
    try:
        async with session.get(url, params={"limit": "1"}) as response:
            events = (await response.json())["events"]
    except aiohttp.ClientConnectorError:
        return 0  # not listening yet
    return int(events[-1]["id"]) if events else 0


async def events_level(buffer: int, options: HardeningOptions, workdir: Path) -> dict[str, Any]:
    flapper = Flapper()
    await flapper.start()
    port = free_port()
    url = f"ws://{LOOPBACK}:{flapper.port}/probe/ws"
    legs = options.flappers
    probe = ProbeProcess(
        probe_config(legs, url, f"{LOOPBACK}:{port}", options, buffer),
        workdir / f"events-{buffer}",
        port,
    )
    result: dict[str, Any] = {"event_buffer_size": buffer, "legs": legs}
    try:
        await probe.start()
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while await _newest_id(session, port) < buffer + legs:
                if time.monotonic() - started > options.fill_deadline_seconds:
                    return {**result, "error": "the buffer did not fill in time"}
                await asyncio.sleep(0.5)
        result["fill_seconds"] = time.monotonic() - started
        flapper.flapping = False
        if not await probe.wait_all_up(legs, time.monotonic() + options.up_deadline_seconds):
            return {**result, "error": f"only {len(probe.up)} of {legs} legs up"}
        await asyncio.sleep(options.warmup_seconds)
        events_url = f"http://{LOOPBACK}:{port}/events"
        result.update(
            await measure(probe, events_url, options.event_clients, options.events_seconds, True)
        )
        return result
    finally:
        result["exit_code"] = await probe.stop()
        await flapper.stop()


async def run(options: HardeningOptions, workdir: Path) -> dict[str, Any]:
    # metrics_legs=0 or event_levels=() leave a storm out.
    metrics: dict[str, Any] = {}
    if options.metrics_legs:
        metrics = await metrics_storm(options, workdir)
        _print_metrics(metrics)
    costs = [page_costs(buffer) for buffer in options.event_levels]
    levels = []
    for buffer in options.event_levels:
        level = await events_level(buffer, options, workdir)
        levels.append(level)
        print(f"  /events, buffer {buffer}: done", flush=True)
    if levels:
        _print_costs(costs)
        _print_events(levels, options)
    return {
        "options": asdict(options),
        "metrics_storm": metrics,
        "events_page_costs": costs,
        "events_storm": levels,
    }


def _print_costs(costs: list[dict[str, Any]]) -> None:
    print_table(
        "Hardening: one /events answer of 1000 events on the loop, full buffer (in-process)",
        ["buffer", "after_id ms", "since ms", "newest ms", "page KB", "whole buffer copy ms"],
        [
            [
                c["event_buffer_size"],
                fmt_ms(c["after_id_max_seconds"], 2),
                fmt_ms(c["since_max_seconds"], 2),
                fmt_ms(c["newest_max_seconds"], 2),
                fmt_num(c["page_bytes"] / 1024, 0),
                fmt_ms(c["whole_buffer_copy_seconds"], 1),
            ]
            for c in costs
        ],
    )


def _answers(storm: dict[str, Any]) -> str:
    clients = storm.get("clients", {})
    statuses = clients.get("statuses", {})
    return " ".join(f"{status}:{count}" for status, count in statuses.items()) or "-"


def _row(storm: dict[str, Any]) -> list[object]:
    healthz = storm.get("healthz", {})
    not_ok = sum(n for status, n in healthz.get("statuses", {}).items() if status != "200")
    clients = storm.get("clients", {})
    return [
        storm.get("false_drops", "-"),
        fmt_ms(storm.get("rtt_p99_seconds")),
        not_ok,
        fmt_ms(healthz.get("latency_seconds", {}).get("max")),
        fmt_ms(storm.get("loop_lag_p99_seconds")),
        fmt_ms(storm.get("loop_lag_max_bucket_seconds"), 0),
        fmt_num(storm.get("probe", {}).get("cpu_percent_of_one_core")),
        _answers(storm),
        fmt_ms(clients.get("latency_seconds", {}).get("p99")),
        storm.get("error", ""),
    ]


HEADERS = [
    "false drops",
    "rtt p99 ms",
    "healthz not 200",
    "healthz max ms",
    "lag p99 ms",
    "lag max bucket ms",
    "cpu %",
    "answers",
    "request p99 ms",
    "error",
]


def _print_metrics(storm: dict[str, Any]) -> None:
    print_table(
        f"Hardening: {storm['legs']} legs, {storm['scrapers']} concurrent /metrics scrapers",
        HEADERS,
        [_row(storm)],
    )


def _print_events(levels: list[dict[str, Any]], options: HardeningOptions) -> None:
    print_table(
        f"Hardening: full /events buffer, {options.event_clients} clients paging through it,"
        f" {options.flappers} legs",
        ["buffer", "fill s", *HEADERS],
        [
            [level["event_buffer_size"], fmt_num(level.get("fill_seconds")), *_row(level)]
            for level in levels
        ],
    )
