"""``python -m t3probe run`` as a child process, its JSON event lines read as they come."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.common import LOOPBACK, child_env, stop_process


class ProbeProcess:
    """``python -m t3probe run`` as a child: its JSON lines read as they come."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        port: int,
        profile: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        # Added to the child's environment (e.g. T3PROBE_EVENT_LOOP), over child_env().
        self._env = dict(env or {})
        # cProfile output of the child's main thread (its event loop), written on SIGTERM.
        self._profile = profile
        self._workdir = workdir
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.up: dict[str, float] = {}
        self.downs: list[dict[str, Any]] = []
        self.lines = 0
        self.started_at = 0.0
        self.first_up_at: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_file = self._workdir / "t3probe.yaml"
        config_file.write_text(yaml.safe_dump(self._config, sort_keys=False))
        with (self._workdir / "t3probe.stderr").open("wb") as stderr:
            self.started_at = time.monotonic()
            profiler = [] if self._profile is None else ["-m", "cProfile", "-o", str(self._profile)]
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiler,
                "-m",
                "t3probe",
                "--log-level=WARNING",
                "run",
                "--config",
                str(config_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**child_env(), **self._env},
                # A large line buffer: the exposition is not on stdout, but a burst of
                # events is, and readline must not choke on it.
                limit=1 << 20,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                self.changed.set()
                return
            self.lines += 1
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("kind") == "up":
                now = time.monotonic()
                self.up[event["leg"]] = now
                if self.first_up_at is None:
                    self.first_up_at = now
            elif event.get("kind") == "down":
                self.up.pop(event["leg"], None)
                self.downs.append({**event, "monotonic": time.monotonic()})
            self.changed.set()

    async def wait_all_up(self, legs: int, deadline: float) -> bool:
        while len(self.up) < legs:
            if self.process is not None and self.process.returncode is not None:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self.changed.wait()
        return True

    async def metrics(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        started = time.monotonic()
        async with session.get(f"http://{LOOPBACK}:{self.port}/metrics") as response:
            text = await response.text()
        return text, time.monotonic() - started

    def stderr_tail(self, chars: int = 2000) -> str:
        path = self._workdir / "t3probe.stderr"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def stop(self) -> int | None:
        code = None
        if self.process is not None:
            code = await stop_process(self.process)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        return code
