"""What every benchmark shares: statistics, tables, result files and child processes.

Benchmarks report figures; none of this judges them. Child processes are always
stopped by their own PID (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent

Summary = dict[str, float | int | None]


def summary(values: Iterable[float]) -> Summary:
    """min / median / p99 / max of ``values``; p99 is nearest-rank, so with fewer than
    100 samples it is the maximum (stated in the docs, not hidden)."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "min": None, "median": None, "p99": None, "max": None}
    rank = max(0, math.ceil(0.99 * len(ordered)) - 1)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p99": ordered[rank],
        "max": ordered[-1],
    }


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def fmt_ms(seconds: float | int | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f}"


def fmt_num(value: float | int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n## {title}")
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_bytes": psutil.virtual_memory().total,
    }


def write_result(name: str, data: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "at": round(time.time(), 3), "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft file-descriptor limit to the hard one; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port(host: str = LOOPBACK) -> int:
    """A port free right now; the tiny race with another binder is acceptable here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child probe refuses any non-loopback connection, as in the test suite.
    env["T3PROBE_LOOPBACK_ONLY"] = "1"
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> int | None:
    """SIGTERM by PID, then SIGKILL by PID if it outlives ``grace``; returns the exit code."""
    if process.returncode is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            return await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        return await process.wait()


@dataclass
class ResourceSample:
    cpu_seconds: float
    rss_bytes: int


def sample_resources(pid: int) -> ResourceSample:
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    return ResourceSample(times.user + times.system, proc.memory_info().rss)


class ResourceWatch:
    """CPU seconds and RSS of a process over a window, RSS sampled at a fixed period."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        self.pid = pid
        self._period = period
        self.rss: list[int] = []
        self._start: ResourceSample | None = None
        self._started_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._start = sample_resources(self.pid)
        self._started_at = time.monotonic()
        self.rss.append(self._start.rss_bytes)
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            with contextlib.suppress(psutil.Error):
                self.rss.append(sample_resources(self.pid).rss_bytes)

    async def finish(self) -> dict[str, float]:
        assert self._start is not None and self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        end = sample_resources(self.pid)
        wall = time.monotonic() - self._started_at
        self.rss.append(end.rss_bytes)
        cpu = end.cpu_seconds - self._start.cpu_seconds
        return {
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "cpu_percent_of_one_core": 100.0 * cpu / wall if wall > 0 else 0.0,
            "rss_mean_mib": statistics.fmean(self.rss) / (1 << 20),
            "rss_max_mib": max(self.rss) / (1 << 20),
        }


# --- Prometheus text ------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def sample_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, lbls), value in samples.items() if n == name and wanted <= set(lbls))


def histogram_buckets(
    samples: Samples, name: str, keep: Callable[[dict[str, str]], bool] | None = None
) -> dict[float, float]:
    """Cumulative bucket counts by upper bound, summed over the series ``keep`` accepts."""
    buckets: dict[float, float] = {}
    for (n, lbls), value in samples.items():
        if n != f"{name}_bucket":
            continue
        labels = dict(lbls)
        if keep is not None and not keep(labels):
            continue
        bound = float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound  # as Prometheus: the highest finite bound
            width = count - previous_count
            fraction = 0.0 if width <= 0 else (rank - previous_count) / width
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return previous_bound


def histogram_max_bucket(buckets: dict[float, float]) -> float | None:
    """The smallest upper bound that holds every observation: an upper bound of the max."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    for bound in bounds:
        if buckets[bound] >= total:
            return bound
    return None
