"""Start-up: process start to the first successful heartbeat.

t3probe: ``python -m t3probe run --config FILE`` with one WebSocket leg to a local echo,
timed from just before the process is spawned to its first ``"kind":"up"`` JSON line
on stdout (the leg connected and the upgrade succeeded). blackbox_exporter: spawned the
same way, then scraped in a tight loop until its first ``probe_success 1`` for the
backend; its figure therefore includes our polling granularity (10 ms). For context, a
bare ``python -c pass`` and one that only imports t3probe's modules are timed too.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.blackbox import BlackboxExporter, http_module
from benchmarks.common import LOOPBACK, child_env, fmt_ms, free_port, print_table, ratio, summary
from benchmarks.probeproc import ProbeProcess
from t3probe.echo import EchoLimits, serve_echo
from t3probe.lab.backend import SESSION_PATH, serve_backend

UP_DEADLINE_SECONDS = 30.0
# What `t3probe run` imports before it can dial: the share of start-up that is imports.
IMPORTS = "import t3probe.cli, t3probe.config_file, t3probe.daemon"
POLL_SECONDS = 0.01


@dataclass(frozen=True)
class StartupOptions:
    repetitions: int = 10
    with_blackbox: bool = True


FULL = StartupOptions()
QUICK = StartupOptions(repetitions=2)


async def _t3probe_once(echo_port: int, workdir: Path) -> float:
    port = free_port()
    config = {
        "listen": f"{LOOPBACK}:{port}",
        "heartbeat_seconds": 1.0,
        "watchdog_seconds": 2.0,
        "probe_stall_seconds": 1.0,
        "legs": [
            {
                "name": "ws",
                "kind": "websocket",
                "url": f"ws://{LOOPBACK}:{echo_port}/probe/ws",
                "segments": ["dispatch"],
            }
        ],
    }
    probe = ProbeProcess(config, workdir, port)
    try:
        await probe.start()
        if not await probe.wait_all_up(1, time.monotonic() + UP_DEADLINE_SECONDS):
            raise RuntimeError(f"t3probe never came up\n{probe.stderr_tail()}")
        assert probe.first_up_at is not None
        return probe.first_up_at - probe.started_at
    finally:
        await probe.stop()


async def _python_once(code: str) -> float:
    """A bare interpreter, or one that only imports: where the start-up time goes."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=child_env(), stdin=asyncio.subprocess.DEVNULL
    )
    code_ = await process.wait()
    if code_ != 0:
        raise RuntimeError(f"python -c {code!r} exited {code_}")
    return time.monotonic() - started


async def _blackbox_once(target: str, workdir: Path) -> float:
    exporter = BlackboxExporter({"http_2xx": http_module(2.0)}, workdir)
    started = time.monotonic()
    await exporter.start()
    try:
        while time.monotonic() - started < UP_DEADLINE_SECONDS:
            result = await exporter.probe(target, "http_2xx")
            if result.success:
                return result.finished - started
            await asyncio.sleep(POLL_SECONDS)
        raise RuntimeError("blackbox_exporter never probed successfully")
    finally:
        await exporter.stop()


async def run(options: StartupOptions, workdir: Path) -> dict[str, Any]:
    echo = await serve_echo(LOOPBACK, 0, EchoLimits(idle_timeout_seconds=3600))
    backend = await serve_backend(LOOPBACK, 0)
    t3probe: list[float] = []
    blackbox: list[float] = []
    bare: list[float] = []
    imports: list[float] = []
    try:
        for index in range(options.repetitions):
            t3probe.append(await _t3probe_once(echo.port, workdir / f"t3probe-{index}"))
            bare.append(await _python_once("pass"))
            imports.append(await _python_once(IMPORTS))
            if options.with_blackbox:
                target = f"http://{LOOPBACK}:{backend.port}{SESSION_PATH}"
                blackbox.append(await _blackbox_once(target, workdir / f"blackbox-{index}"))
    finally:
        await backend.stop()
        await echo.stop()
    figures = {
        "t3probe": summary(t3probe),
        "blackbox_exporter": summary(blackbox),
        "python_bare": summary(bare),
        "python_t3probe_imports": summary(imports),
    }
    rows = [
        [name, s["n"], fmt_ms(s["min"], 0), fmt_ms(s["median"], 0), fmt_ms(s["p99"], 0)]
        for name, s in figures.items()
        if s["n"]
    ]
    print_table(
        "Start-up: process start to first successful heartbeat (ms)",
        ["process", "n", "min", "median", "p99"],
        rows,
    )
    return {
        "options": asdict(options),
        "seconds": figures,
        "samples": {
            "t3probe": t3probe,
            "blackbox_exporter": blackbox,
            "python_bare": bare,
            "python_t3probe_imports": imports,
        },
        "median_ratio_t3probe_to_blackbox": ratio(
            figures["t3probe"]["median"], figures["blackbox_exporter"]["median"]
        ),
    }
