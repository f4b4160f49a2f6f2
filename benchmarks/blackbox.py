"""Debian's prometheus-blackbox-exporter as the comparison point, driven by hand.

We play Prometheus: each call to :meth:`BlackboxExporter.probe` is one scrape of
``/probe?target=...&module=...``, at whatever interval the benchmark drives. The
exporter runs on 127.0.0.1 with a config file written here, and is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.common import LOOPBACK, free_port, parse_samples, stop_process

BLACKBOX_BINARY = "/usr/bin/prometheus-blackbox-exporter"
START_DEADLINE_SECONDS = 10.0


def blackbox_binary() -> str | None:
    if os.access(BLACKBOX_BINARY, os.X_OK):
        return BLACKBOX_BINARY
    return shutil.which("prometheus-blackbox-exporter")


def http_module(timeout_seconds: float) -> dict[str, Any]:
    return {
        "prober": "http",
        "timeout": f"{timeout_seconds:g}s",
        "http": {
            "preferred_ip_protocol": "ip4",
            "ip_protocol_fallback": False,
            # The default (2xx) is kept: the lab backend answers 200 unless told otherwise.
            "no_follow_redirects": True,
        },
    }


class _Binary(str):
    """A string dumped as a YAML ``!!binary`` scalar: raw bytes for the tcp prober."""


def _binary_representer(dumper: yaml.SafeDumper, data: _Binary) -> yaml.Node:
    encoded = base64.b64encode(data.encode("latin-1")).decode()
    return dumper.represent_scalar("tag:yaml.org,2002:binary", encoded)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Binary, _binary_representer)


def websocket_echo_module(
    timeout_seconds: float, host: str, ca_file: str | None, path: str = "/probe/ws"
) -> dict[str, Any]:
    """A WebSocket echo round trip with the tcp prober, which has no WebSocket support:
    send the upgrade, expect 101, send one text frame, expect its echo.

    The prober appends "\\n" to every ``send``; the upgrade ends in "\\r" so that the
    appended byte completes its final CRLF, and the frame declares a payload whose last
    byte is that "\\n". The masking key is zero, so the payload goes on the wire as is.
    """
    payload = b"bbprobe\n"
    frame = bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload[:-1]
    upgrade = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r"
    )
    tcp: dict[str, Any] = {
        "preferred_ip_protocol": "ip4",
        "ip_protocol_fallback": False,
        "query_response": [
            {"send": upgrade},
            {"expect": "^HTTP/1.1 101"},
            {"send": _Binary(frame.decode("latin-1"))},
            {"expect": "bbprobe"},
        ],
    }
    if ca_file is not None:
        tcp["tls"] = True
        tcp["tls_config"] = {"ca_file": ca_file, "server_name": host}
    return {"prober": "tcp", "timeout": f"{timeout_seconds:g}s", "tcp": tcp}


@dataclass
class ProbeResult:
    success: bool
    started: float  # monotonic
    finished: float  # monotonic
    duration_seconds: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    error: str = ""


class BlackboxExporter:
    def __init__(self, modules: dict[str, dict[str, Any]], workdir: Path) -> None:
        self._modules = modules
        self._workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        binary = blackbox_binary()
        if binary is None:
            raise FileNotFoundError("prometheus-blackbox-exporter is not installed")
        self._workdir.mkdir(parents=True, exist_ok=True)
        config = self._workdir / "blackbox.yml"
        config.write_text(yaml.dump({"modules": self._modules}, Dumper=_Dumper))
        self.port = free_port()
        self.process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=error",
            "--history.limit=10",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # Keep-alive to the exporter is what Prometheus does; it keeps our side cheap.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while True:
            if self.process.returncode is not None:
                raise RuntimeError(f"blackbox_exporter exited with {self.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self._session.get(f"{self.base_url}/-/healthy") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError("blackbox_exporter did not become healthy")
            await asyncio.sleep(0.02)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def probe(self, target: str, module: str) -> ProbeResult:
        assert self._session is not None
        started = time.monotonic()
        try:
            async with self._session.get(
                f"{self.base_url}/probe", params={"target": target, "module": module}
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, OSError) as err:
            return ProbeResult(False, started, time.monotonic(), error=repr(err))
        finished = time.monotonic()
        samples = parse_samples(text)
        success = samples.get(("probe_success", ()), 0.0) == 1.0
        duration = samples.get(("probe_duration_seconds", ()))
        phases = {
            dict(labels)["phase"]: value
            for (name, labels), value in samples.items()
            if name == "probe_http_duration_seconds" and "phase" in dict(labels)
        }
        return ProbeResult(success, started, finished, duration, phases)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.process is not None:
            await stop_process(self.process, grace=5.0)


async def drive_scrapes(
    exporter: BlackboxExporter,
    target: str,
    module: str,
    interval: float,
    on_result: Callable[[ProbeResult], None],
) -> None:
    """Scrape at a fixed rate until cancelled, as Prometheus would.

    Scrapes may overlap when a probe takes longer than the interval (Prometheus itself
    would refuse a timeout above the interval): the most favourable setting for the
    exporter, stated in the docs.
    """
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        on_result(await exporter.probe(target, module))

    next_at = time.monotonic()
    try:
        while True:
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
