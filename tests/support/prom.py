"""A real Prometheus on loopback for tests: ``async with running_prometheus([...]) as prom``.

Debian's ``prometheus`` binary scrapes the given loopback targets every second, or
serves a history backfilled with promtool (``prometheus_with_history``); the server is
stopped by its PID (SIGTERM, then SIGKILL), never by name. Without the binary
the test is skipped loudly, and the suite's conftest turns that skip into a failure
under CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.env import TIME_UNIT
from tests.support.harness import free_port
from tests.support.tools import promtool, run_tool

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
SCRAPE_INTERVAL = "1s"


class Prometheus:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result list of an instant query; fails the test on an API error."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.url}/api/v1/query", params=params) as response,
        ):
            body = await response.json()
        assert body.get("status") == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for(self, expr: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns something, e.g. until a target was scraped N times."""
        async with asyncio.timeout(timeout * TIME_UNIT):
            while True:
                result = await self.query(expr)
                if result:
                    return result
                await asyncio.sleep(0.25)


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "!!! prometheus NOT FOUND: the attribute tests need a real Prometheus"
            " (Debian: apt-get install prometheus; `make test` installs it when root) !!!"
        )
    return binary


def write_config(path: Path, targets: Sequence[str], job: str, rule_files: Sequence[Path]) -> None:
    for target in targets:
        host = target.rpartition(":")[0]
        # The suite talks to loopback only; Prometheus is a child the netguard cannot see.
        assert host in ("127.0.0.1", "localhost", "[::1]"), f"non-loopback target {target}"
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    if rule_files:
        config["rule_files"] = [str(rule) for rule in rule_files]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def _spawn(binary: str, root: Path, port: int) -> subprocess.Popen[bytes]:
    # A log file, not a pipe: nobody reads a pipe while tests run, and a full one blocks.
    with (root / "prometheus.log").open("wb") as log_file:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_SECONDS)


async def _wait_ready(prom: Prometheus) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_SECONDS * TIME_UNIT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if prom.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {prom.process.returncode}:\n{prom.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{prom.url}/-/ready") as response:
                    if response.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"prometheus not ready in time:\n{prom.log_tail()}")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_prometheus(
    targets: Sequence[str],
    *,
    job: str = "t3probe",
    rule_files: Sequence[Path] = (),
) -> AsyncIterator[Prometheus]:
    """Prometheus scraping ``targets`` (``127.0.0.1:PORT``) as ``job`` every second."""
    binary = prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="t3probe-prom-") as tmp:
        root = Path(tmp)
        write_config(root / "prometheus.yml", targets, job, rule_files)
        port = free_port()
        process = _spawn(binary, root, port)
        prom = Prometheus(process, port, root / "prometheus.log")
        try:
            await _wait_ready(prom)
            yield prom
        finally:
            await asyncio.to_thread(_stop, process)


class HistoryPrometheus:
    """A Prometheus serving a backfilled TSDB and scraping nothing (synchronous API)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        assert body.get("status") == "success", body
        return body["data"]

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query", [("query", expr), ("time", str(at))])
        assert data["resultType"] == "vector", data["resultType"]
        result: list[dict[str, Any]] = data["result"]
        return result

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = [("query", expr), ("start", str(start)), ("end", str(end)), ("step", str(step))]
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        params = [("match[]", match), ("start", str(start)), ("end", str(end))]
        result: list[dict[str, str]] = self._get("/api/v1/series", params)
        return result


@contextlib.contextmanager
def prometheus_with_history(openmetrics: str, root: Path) -> Iterator[HistoryPrometheus]:
    """Backfill ``openmetrics`` with promtool into a fresh TSDB and serve it on loopback."""
    binary = prometheus_binary()
    source = root / "history.om"
    source.write_text(openmetrics, encoding="utf-8")
    blocks = ["tsdb", "create-blocks-from", "openmetrics", str(source), str(root / "data")]
    run_tool([promtool(), *blocks])
    source.unlink()  # tens of MB, now in the TSDB
    write_config(root / "prometheus.yml", [], "none", [])
    port = free_port()
    process = _spawn(binary, root, port)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS * TIME_UNIT
        while True:
            if process.poll() is not None:
                log = (root / "prometheus.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus not ready in time")
            time.sleep(0.1)
        yield HistoryPrometheus(url)
    finally:
        _stop(process)
