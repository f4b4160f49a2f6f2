"""Scale: many WebSocket legs at 1 s heartbeat against one local echo.

For each level, ``python -m t3probe run`` runs as a child with N legs to one echo server
(in this process, caps raised to fit). Measured once every leg is up and a warm-up has
passed, over a fixed window: the child's CPU and RSS (psutil), its event-loop lag p99
and RTT p99 (deltas of ``t3probe_event_loop_lag_seconds`` / ``t3probe_rtt_seconds``
between two scrapes of its ``/metrics``), heartbeats answered, and every drop. A drop
during the window is a false drop: the echo is healthy and nothing is injected.

The window contains one ``/metrics`` scrape (the first), as it would under Prometheus;
its duration is reported because the exposition is rendered on the probe's event loop.

A level "holds" when every leg came up, nothing dropped in the window, the lag p99 stays
under ``probe_stall_seconds`` and the probe is not CPU-bound. The next level runs only
if this one held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.common import (
    LOOPBACK,
    ResourceWatch,
    bucket_delta,
    fmt_ms,
    fmt_num,
    free_port,
    histogram_buckets,
    histogram_max_bucket,
    histogram_quantile,
    parse_samples,
    print_table,
    raise_fd_limit,
    sample_sum,
)
from benchmarks.probeproc import ProbeProcess
from t3probe.clock import SystemClock
from t3probe.config import MAX_LEGS, build_config
from t3probe.echo import EchoLimits, serve_echo
from t3probe.metrics import ProbeMetrics
from t3probe.recorder import Recorder

PROBE_STALL_SECONDS = 1.0
CPU_BOUND_PERCENT = 90.0


@dataclass(frozen=True)
class ScaleOptions:
    levels: tuple[int, ...] = (100, 250, 500, 1000, 2500, 5000)
    # Levels re-run with a /metrics scrape inside the window.
    scraped_levels: tuple[int, ...] = (100, 250, 500, 1000)
    # In-process cost of the bookkeeping; every leg coming up at once only for the
    # smaller levels, as its cost grows with the square of the legs.
    cost_levels: tuple[int, ...] = (100, 1000, MAX_LEGS)
    event_cost_levels: tuple[int, ...] = (100, 1000)
    window_seconds: float = 15.0
    warmup_seconds: float = 3.0
    heartbeat: float = 1.0
    watchdog: float = 2.0
    up_deadline_seconds: float = 90.0
    # MAX_LEGS at the production heartbeat, one /metrics scrape in the window (0: skip).
    big_legs: int = 0
    big_heartbeat: float = 10.0


FULL = ScaleOptions(big_legs=MAX_LEGS)
QUICK = ScaleOptions(
    levels=(20,),
    scraped_levels=(20,),
    cost_levels=(20,),
    event_cost_levels=(20,),
    window_seconds=3.0,
    warmup_seconds=1.0,
)


def scale_config(legs: int, echo_port: int, listen: str, options: ScaleOptions) -> dict[str, Any]:
    url = f"ws://{LOOPBACK}:{echo_port}/probe/ws"
    return {
        "listen": listen,
        "heartbeat_seconds": options.heartbeat,
        "watchdog_seconds": options.watchdog,
        "probe_stall_seconds": PROBE_STALL_SECONDS,
        "attribution_window_seconds": options.watchdog + options.heartbeat,
        "backoff_initial_seconds": 0.5,
        "backoff_max_seconds": 5.0,
        "legs": [
            {"name": f"ws{i:05d}", "kind": "websocket", "url": url, "segments": ["lb", "dispatch"]}
            for i in range(legs)
        ],
    }


def echo_limits(legs: int) -> EchoLimits:
    """The local echo's caps raised to fit ``legs`` WebSockets from one address."""
    return EchoLimits(
        max_connections=legs + 100,
        # Every leg dials from 127.0.0.1: one client address holds them all.
        max_connections_per_client=legs + 100,
        # ... and no slots held back for other clients: there are none.
        reserved_connections=0,
        max_pending_connections=legs + 100,
        idle_timeout_seconds=3600,
        messages_per_second=50,
        burst=100,
    )


async def run_level(
    legs: int,
    options: ScaleOptions,
    workdir: Path,
    scrape_in_window: bool,
    profile: Path | None = None,
) -> dict[str, Any]:
    echo = await serve_echo(LOOPBACK, 0, echo_limits(legs))
    port = free_port()
    probe = ProbeProcess(
        scale_config(legs, echo.port, f"{LOOPBACK}:{port}", options),
        workdir / f"n{legs}-{'scraped' if scrape_in_window else 'quiet'}",
        port,
        profile,
    )
    result: dict[str, Any] = {"legs": legs}
    try:
        await probe.start()
        all_up = await probe.wait_all_up(legs, time.monotonic() + options.up_deadline_seconds)
        result["all_up"] = all_up
        result["legs_up"] = len(probe.up)
        result["ramp_seconds"] = (
            max(probe.up.values()) - probe.started_at if all_up and probe.up else None
        )
        result["ramp_drops"] = len(probe.downs)
        if not all_up:
            result["stderr_tail"] = probe.stderr_tail()
            result["held"] = False
            result["why_not"] = f"only {len(probe.up)} of {legs} legs up in time"
            return result
        await asyncio.sleep(options.warmup_seconds)
        drops_before = len(probe.downs)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            probe_watch = ResourceWatch(probe.pid)
            echo_watch = ResourceWatch(os.getpid())
            probe_watch.start()
            echo_watch.start()
            first_text, first_scrape = "", None
            if scrape_in_window:
                first_text, first_scrape = await probe.metrics(session)
            await asyncio.sleep(options.window_seconds)
            # The exposition is rendered before the lag it causes is recorded, so this
            # last scrape never shows up in its own figures.
            last_text, last_scrape = await probe.metrics(session)
            ended = time.monotonic()
            result["probe"] = await probe_watch.finish()
            result["echo_and_driver"] = await echo_watch.finish()
        first, last = parse_samples(first_text), parse_samples(last_text)
        lag = bucket_delta(
            histogram_buckets(last, "t3probe_event_loop_lag_seconds"),
            histogram_buckets(first, "t3probe_event_loop_lag_seconds"),
        )
        rtt = bucket_delta(
            histogram_buckets(last, "t3probe_rtt_seconds"),
            histogram_buckets(first, "t3probe_rtt_seconds"),
        )
        heartbeats = sample_sum(last, "t3probe_rtt_seconds_count") - sample_sum(
            first, "t3probe_rtt_seconds_count"
        )
        if scrape_in_window:
            expected = legs * options.window_seconds / options.heartbeat
        else:
            expected = sum(ended - at for at in probe.up.values()) / options.heartbeat
        window_drops = probe.downs[drops_before:]
        result.update(
            {
                "scrape_in_window": scrape_in_window,
                "metrics_scrape_seconds": [first_scrape, last_scrape],
                "metrics_bytes": len(last_text.encode()),
                "loop_lag_p50_seconds": histogram_quantile(0.5, lag),
                "loop_lag_p99_seconds": histogram_quantile(0.99, lag),
                "loop_lag_max_bucket_seconds": histogram_max_bucket(lag),
                "rtt_p50_seconds": histogram_quantile(0.5, rtt),
                "rtt_p99_seconds": histogram_quantile(0.99, rtt),
                "heartbeats_answered": heartbeats,
                "heartbeats_expected": round(expected),
                "false_drops": len(window_drops),
                "false_drop_reasons": sorted({str(d.get("reason")) for d in window_drops}),
                "ramp_drop_reasons": sorted(
                    {str(d.get("reason")) for d in probe.downs[:drops_before]}
                ),
                "echo_connections": echo.connection_count,
            }
        )
        lag_p99 = result["loop_lag_p99_seconds"] or 0.0
        cpu = result["probe"]["cpu_percent_of_one_core"]
        problems = []
        if window_drops:
            problems.append(f"{len(window_drops)} false drops")
        if lag_p99 >= PROBE_STALL_SECONDS:
            problems.append(f"loop lag p99 {lag_p99:.2f} s")
        if cpu >= CPU_BOUND_PERCENT:
            problems.append(f"CPU-bound ({cpu:.0f}% of a core)")
        result["held"] = not problems
        result["why_not"] = "; ".join(problems)
        return result
    finally:
        result["exit_code"] = await probe.stop()
        await echo.stop()


def bookkeeping_costs(legs: int, with_events: bool) -> dict[str, Any]:
    """Synchronous, in-process costs of the probe's per-leg bookkeeping: what blocks its
    event loop when every leg changes state at once (start-up, an echo restart) and
    when /metrics is scraped."""
    config = build_config(scale_config(legs, 1, f"{LOOPBACK}:0", ScaleOptions()))
    registry = CollectorRegistry()
    recorder = Recorder(config, ProbeMetrics(registry, config), SystemClock(), lambda _: None)
    started = time.perf_counter()
    recorder.refresh_verdict()
    figures: dict[str, Any] = {
        "legs": legs,
        "refresh_verdict_seconds": time.perf_counter() - started,
    }
    if with_events:
        started = time.perf_counter()
        for leg in config.legs:
            recorder.leg_up(leg.name)
        figures["all_legs_up_events_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    body = generate_latest(registry)
    figures["exposition_seconds"] = time.perf_counter() - started
    figures["exposition_bytes"] = len(body)
    return figures


async def _series(
    levels: tuple[int, ...], options: ScaleOptions, workdir: Path, scraped: bool, soft: int
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for legs in levels:
        # Each leg holds one socket in the probe and one in the echo (this process).
        if legs + 200 > soft:
            results.append({"legs": legs, "held": False, "why_not": f"fd limit {soft}"})
            break
        level = await run_level(legs, options, workdir, scraped)
        results.append(level)
        _print_level(level)
        if not level["held"]:
            break
    return results


async def run(options: ScaleOptions, workdir: Path) -> dict[str, Any]:
    soft, hard = raise_fd_limit()
    costs = [bookkeeping_costs(n, n in options.event_cost_levels) for n in options.cost_levels]
    _print_costs(costs)
    quiet = await _series(options.levels, options, workdir, False, soft)
    _print("no scrape in the window (figures since start, ramp included)", quiet)
    scraped = await _series(options.scraped_levels, options, workdir, True, soft)
    _print("one /metrics scrape in the window, as Prometheus would", scraped)
    big: list[dict[str, Any]] = []
    if options.big_legs:
        heavy = dataclasses.replace(
            options,
            heartbeat=options.big_heartbeat,
            watchdog=2 * options.big_heartbeat,
            window_seconds=max(options.window_seconds, 3 * options.big_heartbeat),
            up_deadline_seconds=max(options.up_deadline_seconds, options.big_legs / 50),
        )
        big = await _series((options.big_legs,), heavy, workdir, True, soft)
        _print(f"{options.big_legs} legs at a {options.big_heartbeat:g} s heartbeat", big)
    return {
        "big_level": big,
        "options": asdict(options),
        "fd_limit": [soft, hard],
        "bookkeeping": costs,
        "levels": quiet,
        "scraped_levels": scraped,
    }


def _print_costs(costs: list[dict[str, Any]]) -> None:
    rows = [
        [
            c["legs"],
            fmt_ms(c["refresh_verdict_seconds"]),
            fmt_ms(c.get("all_legs_up_events_seconds"), 0),
            fmt_ms(c["exposition_seconds"], 0),
            fmt_num(c["exposition_bytes"] / 1e6),
        ]
        for c in costs
    ]
    print_table(
        "Scale: bookkeeping on the event loop (in-process, synchronous)",
        ["legs", "one verdict ms", "every leg up ms", "/metrics render ms", "/metrics MB"],
        rows,
    )


def _print_level(level: dict[str, Any]) -> None:
    print(
        f"  {level['legs']} legs: held={level['held']} {level.get('why_not', '')}".rstrip(),
        flush=True,
    )


def _print(title: str, levels: list[dict[str, Any]]) -> None:
    rows = []
    for level in levels:
        probe = level.get("probe", {})
        rows.append(
            [
                level["legs"],
                fmt_num(level.get("ramp_seconds")),
                fmt_num(probe.get("cpu_percent_of_one_core")),
                fmt_num(probe.get("rss_max_mib")),
                fmt_ms(level.get("loop_lag_p99_seconds")),
                fmt_ms(level.get("rtt_p99_seconds")),
                level.get("false_drops", "-"),
                level.get("ramp_drops", "-"),
                fmt_ms((level.get("metrics_scrape_seconds") or [None, None])[-1]),
                "yes" if level["held"] else f"no: {level.get('why_not', '')}",
            ]
        )
    print_table(
        f"Scale: WebSocket legs at 1 s heartbeat, one echo; {title}",
        [
            "legs",
            "ramp s",
            "cpu %",
            "rss MiB",
            "lag p99 ms",
            "rtt p99 ms",
            "false drops",
            "ramp drops",
            "scrape ms",
            "held",
        ],
        rows,
    )
