"""RTT fidelity: the fault proxy adds a known latency; how far off is what each tool reports?

The proxy delays each direction by half the injected latency, so a request/answer
exchange on an established connection should measure the injected figure plus the
loopback and proxy overhead. A tool that opens a new connection per probe (as
blackbox_exporter does) also pays the TCP handshake to the proxy, which the proxy's
kernel answers without delay, and the request/answer exchange, which it delays.

Reported per tool and injected latency: measured (median, p99) and measured minus
injected (median, p99). t3probe's samples are its own RTT observations (the values fed
into ``t3probe_rtt_seconds``), taken one by one rather than from histogram buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.blackbox import ProbeResult, drive_scrapes
from benchmarks.common import fmt_ms, print_table, summary
from benchmarks.targets import BLACKBOX_MODULE, loopback_targets, running_tools

TOOLS = (
    "t3probe_ws",
    "naive_ws",
    "t3probe_http",
    "naive_http",
    "blackbox_duration",
    "blackbox_processing",
)


@dataclass(frozen=True)
class RttOptions:
    latencies_ms: tuple[float, ...] = (0.0, 5.0, 50.0)
    seconds_per_latency: float = 12.0
    # Frequent heartbeats give more samples; the watchdog stays well above the latency.
    heartbeat: float = 0.2
    watchdog: float = 2.0
    with_blackbox: bool = True


FULL = RttOptions()
QUICK = RttOptions(seconds_per_latency=2.0)


class _Samples:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {tool: [] for tool in TOOLS}
        self.recording = False

    def add(self, tool: str, seconds: float) -> None:
        if self.recording:
            self.values[tool].append(seconds)

    def take(self) -> dict[str, list[float]]:
        taken = self.values
        self.values = {tool: [] for tool in TOOLS}
        return taken


def _spy_on_rtt(recorder: Any, samples: _Samples) -> None:
    original: Callable[[str, float, int], None] = recorder.observe_rtt

    def observe_rtt(leg: str, seconds: float, connection: int = 0) -> None:
        samples.add(f"t3probe_{leg}", seconds)
        original(leg, seconds, connection)

    # The recorder has no RTT listener; wrapping its method keeps src/ untouched.
    setattr(recorder, "observe_rtt", observe_rtt)  # noqa: B010


async def run(options: RttOptions, workdir: Path) -> dict[str, Any]:
    samples = _Samples()
    results: dict[str, dict[str, Any]] = {}
    async with (
        loopback_targets() as targets,
        running_tools(
            targets, options.heartbeat, options.watchdog, workdir, options.with_blackbox
        ) as tools,
    ):
        _spy_on_rtt(tools.probe.recorder, samples)
        naive_seen = {"naive_ws": 0, "naive_http": 0}

        def on_blackbox(result: ProbeResult) -> None:
            if result.success and result.duration_seconds is not None:
                samples.add("blackbox_duration", result.duration_seconds)
                if "processing" in result.phases:
                    samples.add("blackbox_processing", result.phases["processing"])

        scraper: asyncio.Task[None] | None = None
        if tools.blackbox is not None:
            scraper = asyncio.create_task(
                drive_scrapes(
                    tools.blackbox,
                    targets.http_url,
                    BLACKBOX_MODULE,
                    options.heartbeat,
                    on_blackbox,
                )
            )
        try:
            await asyncio.sleep(1.0)  # every tool connected and past its first probe
            for ms in options.latencies_ms:
                with targets.ws_proxy.latency(ms), targets.http_proxy.latency(ms):
                    # Let probes already in flight under the old latency finish.
                    await asyncio.sleep(options.heartbeat + ms / 1000 + 0.2)
                    naive_seen = {
                        "naive_ws": len(tools.naive_ws.rtts),
                        "naive_http": len(tools.naive_http.rtts),
                    }
                    samples.recording = True
                    started = time.monotonic()
                    await asyncio.sleep(options.seconds_per_latency)
                    samples.recording = False
                    elapsed = time.monotonic() - started
                taken = samples.take()
                taken["naive_ws"] = tools.naive_ws.rtts[naive_seen["naive_ws"] :]
                taken["naive_http"] = tools.naive_http.rtts[naive_seen["naive_http"] :]
                results[f"{ms:g}"] = _figures(ms, taken, elapsed)
        finally:
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
    _print(results)
    return {"options": asdict(options), "latencies": results}


def _figures(ms: float, taken: dict[str, list[float]], elapsed: float) -> dict[str, Any]:
    injected = ms / 1000.0
    out: dict[str, Any] = {"period_seconds": round(elapsed, 2)}
    for tool in TOOLS:
        values = taken.get(tool, [])
        out[tool] = {
            "measured_seconds": summary(values),
            "error_seconds": summary(v - injected for v in values),
        }
    return out


def _print(results: dict[str, dict[str, Any]]) -> None:
    rows: list[list[object]] = []
    for ms, figures in results.items():
        for tool in TOOLS:
            measured = figures[tool]["measured_seconds"]
            error = figures[tool]["error_seconds"]
            if not measured["n"]:
                continue
            rows.append(
                [
                    ms,
                    tool,
                    measured["n"],
                    fmt_ms(measured["median"], 2),
                    fmt_ms(measured["p99"], 2),
                    fmt_ms(error["median"], 2),
                    fmt_ms(error["p99"], 2),
                ]
            )
    print_table(
        "RTT fidelity (ms): measured and measured minus injected",
        ["injected", "tool", "n", "median", "p99", "err median", "err p99"],
        rows,
    )
