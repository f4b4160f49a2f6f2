"""Footprint: the reference three legs at the default heartbeat, as a real process.

The lab's loopback topology (TLS echo behind an "LB" and an "edge" fault proxy, a DoH
server, a backend) runs in this process; ``python -m t3probe run --config FILE`` runs as
a child with the lab's three legs at the production timings (10 s heartbeat, 20 s
watchdog). Beside it, blackbox_exporter probes the same three targets every 10 s:
the WebSocket echo through the edge and through the LB (TLS, upgrade, one frame and its
echo, with the tcp prober — 0.23 has no WebSocket prober and no DoH, so it connects to
the edge's address directly), and the backend over HTTP. RSS and CPU of both processes
are sampled with psutil over the same window, after a warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.blackbox import (
    BlackboxExporter,
    ProbeResult,
    drive_scrapes,
    http_module,
    websocket_echo_module,
)
from benchmarks.common import (
    LOOPBACK,
    ResourceWatch,
    fmt_num,
    free_port,
    parse_samples,
    print_table,
    sample_sum,
)
from benchmarks.probeproc import ProbeProcess
from t3probe.echo import EchoLimits, serve_echo
from t3probe.lab.backend import SESSION_PATH, serve_backend
from t3probe.lab.dohserver import DohServer
from t3probe.lab.pki import make_pki
from t3probe.lab.topology import (
    DOH_TTL_SECONDS,
    EDGE_ADDRESS,
    LAB_HOST,
    LAB_TIMINGS,
    LB_ADDRESS,
    SERVICE_ADDRESS,
    LabParts,
    _proxies_on_one_port,
    lab_config,
)

UP_DEADLINE_SECONDS = 30.0


@dataclass(frozen=True)
class FootprintOptions:
    seconds: float = 120.0
    warmup_seconds: float = 3.0
    heartbeat: float = 10.0  # the production default; the watchdog is the default 20 s
    with_blackbox: bool = True


FULL = FootprintOptions()
QUICK = FootprintOptions(seconds=10.0)


@contextlib.asynccontextmanager
async def lab_topology(workdir: Path) -> AsyncIterator[LabParts]:
    """The lab's parts without the lab's in-process probe."""
    async with contextlib.AsyncExitStack() as stack:
        pki = make_pki(workdir / "pki", [LAB_HOST], [SERVICE_ADDRESS])
        dispatch = await serve_echo(
            SERVICE_ADDRESS, 0, EchoLimits(idle_timeout_seconds=3600), pki.server_context()
        )
        stack.push_async_callback(dispatch.stop)
        lb, edge = await _proxies_on_one_port(dispatch.port)
        stack.push_async_callback(lb.stop)
        stack.push_async_callback(edge.stop)
        doh = DohServer({LAB_HOST: [EDGE_ADDRESS]}, ttl=DOH_TTL_SECONDS)
        await doh.start(SERVICE_ADDRESS, 0, pki.server_context())
        stack.push_async_callback(doh.stop)
        backend = await serve_backend(SERVICE_ADDRESS, 0)
        stack.push_async_callback(backend.stop)
        yield LabParts(dispatch, lb, edge, doh, backend, pki)


def reference_config(parts: LabParts, listen: str, heartbeat: float) -> dict[str, Any]:
    data: dict[str, Any] = lab_config(parts, listen).model_dump(mode="json")
    for key in LAB_TIMINGS:
        del data[key]  # back to the production defaults
    data["heartbeat_seconds"] = heartbeat
    data["watchdog_seconds"] = 2 * heartbeat
    data["attribution_window_seconds"] = 2 * heartbeat
    # The default (2 s) unless a short test heartbeat needs it below the watchdog.
    data["probe_stall_seconds"] = min(2.0, heartbeat)
    return {key: value for key, value in data.items() if value is not None}


async def run(options: FootprintOptions, workdir: Path) -> dict[str, Any]:
    async with lab_topology(workdir) as parts:
        port = free_port()
        config = reference_config(parts, f"{LOOPBACK}:{port}", options.heartbeat)
        probe = ProbeProcess(config, workdir / "probe", port)
        blackbox: BlackboxExporter | None = None
        scrapers: list[asyncio.Task[None]] = []
        outcomes: dict[str, list[bool]] = {}
        try:
            await probe.start()
            if not await probe.wait_all_up(3, time.monotonic() + UP_DEADLINE_SECONDS):
                raise RuntimeError(f"t3probe legs not up: {probe.up}\n{probe.stderr_tail()}")
            if options.with_blackbox:
                blackbox, targets = await _start_blackbox(parts, workdir, options.heartbeat)
                for name, (target, module) in targets.items():
                    outcomes[name] = []
                    scrapers.append(
                        asyncio.create_task(
                            drive_scrapes(
                                blackbox,
                                target,
                                module,
                                options.heartbeat,
                                _collect(outcomes[name]),
                            )
                        )
                    )
            await asyncio.sleep(options.warmup_seconds)
            watches = {"t3probe": ResourceWatch(probe.pid)}
            if blackbox is not None:
                watches["blackbox_exporter"] = ResourceWatch(blackbox.pid)
            for watch in watches.values():
                watch.start()
            await asyncio.sleep(options.seconds)
            figures: dict[str, dict[str, Any]] = {
                name: dict(await watch.finish()) for name, watch in watches.items()
            }
            async with aiohttp.ClientSession() as session:
                text, _ = await probe.metrics(session)
            samples = parse_samples(text)
            figures["t3probe"]["heartbeats_total"] = sample_sum(
                samples, "t3probe_rtt_seconds_count"
            )
            figures["t3probe"]["drops"] = len(probe.downs)
            if blackbox is not None:
                figures["blackbox_exporter"]["probes_total"] = sum(
                    len(v) for v in outcomes.values()
                )
                figures["blackbox_exporter"]["probes_failed"] = sum(
                    v.count(False) for v in outcomes.values()
                )
        finally:
            for task in scrapers:
                task.cancel()
            await asyncio.gather(*scrapers, return_exceptions=True)
            if blackbox is not None:
                await blackbox.stop()
            exit_code = await probe.stop()
    figures["t3probe"]["exit_code"] = exit_code
    _print(options, figures)
    return {"options": asdict(options), "processes": figures}


async def _start_blackbox(
    parts: LabParts, workdir: Path, heartbeat: float
) -> tuple[BlackboxExporter, dict[str, tuple[str, str]]]:
    ca_file = str(parts.pki.ca_cert)
    modules = {
        "ws_echo": websocket_echo_module(min(5.0, 2 * heartbeat), LAB_HOST, ca_file),
        "http_2xx": http_module(min(5.0, 2 * heartbeat)),
    }
    blackbox = BlackboxExporter(modules, workdir / "blackbox")
    await blackbox.start()
    targets = {
        "cloudflare": (f"{EDGE_ADDRESS}:{parts.edge.port}", "ws_echo"),
        "internal": (f"{LB_ADDRESS}:{parts.lb.port}", "ws_echo"),
        "t3serve": (f"http://{SERVICE_ADDRESS}:{parts.backend.port}{SESSION_PATH}", "http_2xx"),
    }
    for name, (target, module) in targets.items():
        result = await blackbox.probe(target, module)
        if not result.success:
            await blackbox.stop()
            raise RuntimeError(f"blackbox_exporter cannot probe {name} ({target}, {module})")
    return blackbox, targets


def _collect(outcomes: list[bool]) -> Callable[[ProbeResult], None]:
    def on_result(result: ProbeResult) -> None:
        outcomes.append(result.success)

    return on_result


def _print(options: FootprintOptions, figures: dict[str, dict[str, Any]]) -> None:
    rows = [
        [
            name,
            fmt_num(f["wall_seconds"], 0),
            fmt_num(f["cpu_seconds"], 2),
            fmt_num(f["cpu_percent_of_one_core"], 2),
            fmt_num(f["rss_mean_mib"]),
            fmt_num(f["rss_max_mib"]),
        ]
        for name, f in figures.items()
    ]
    print_table(
        f"Footprint: three reference legs, heartbeat {options.heartbeat:g} s",
        ["process", "window s", "cpu s", "cpu %", "rss mean MiB", "rss max MiB"],
        rows,
    )
