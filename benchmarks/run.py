"""Entry point: ``python -m benchmarks.run [--quick] [--out DIR] [NAME ...]``.

Runs the selected benchmarks (all by default) one after another, each in its own event
loop, prints a table per benchmark and writes ``DIR/NAME.json`` (default
``benchmarks/results``). Benchmarks report figures; they never pass or fail on them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import detection, dohclient, footprint, hardening, rtt, scale, startup
from benchmarks.common import RESULTS_DIR, raise_fd_limit, write_result
from t3probe import netguard

RunFn = Callable[[Any, Path], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    full: Any
    quick: Any
    run: RunFn


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "detection",
            "injection to drop event per fault kind: t3probe, naive loop, blackbox_exporter",
            detection.FULL,
            detection.QUICK,
            detection.run,
        ),
        Benchmark(
            "rtt",
            "measured minus injected latency (0, 5, 50 ms): t3probe, naive, blackbox_exporter",
            rtt.FULL,
            rtt.QUICK,
            rtt.run,
        ),
        Benchmark(
            "footprint",
            "RSS and CPU of the reference three legs at 10 s heartbeat vs blackbox_exporter",
            footprint.FULL,
            footprint.QUICK,
            footprint.run,
        ),
        Benchmark(
            "scale",
            "100, 1000, ... WebSocket legs at 1 s heartbeat: CPU, RSS, loop lag, false drops",
            scale.FULL,
            scale.QUICK,
            scale.run,
        ),
        Benchmark(
            "startup",
            "process start to first successful heartbeat, t3probe vs blackbox_exporter",
            startup.FULL,
            startup.QUICK,
            startup.run,
        ),
        Benchmark(
            "dohclient",
            "import time and RSS of the DoH client: httpcore2 (HTTP/2) vs aiohttp (before #19)",
            dohclient.FULL,
            dohclient.QUICK,
            dohclient.run,
        ),
        Benchmark(
            "hardening",
            "/metrics and /events storms on a probe whose legs heartbeat: false drops, lag",
            hardening.FULL,
            hardening.QUICK,
            hardening.run,
        ),
    )
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="t3probe benchmarks on loopback; figures, not pass/fail.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="short mode: small N, short periods")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, metavar="DIR", help="where NAME.json goes"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def run_one(benchmark: Benchmark, options: Any, out_dir: Path, mode: str) -> dict[str, Any]:
    """Run one benchmark in a fresh event loop and write its JSON; returns the result."""
    with tempfile.TemporaryDirectory(prefix=f"t3probe-bench-{benchmark.name}-") as workdir:
        started = time.monotonic()
        result = asyncio.run(benchmark.run(options, Path(workdir)))
        elapsed = time.monotonic() - started
    payload = {"mode": mode, "elapsed_seconds": round(elapsed, 1), **result}
    path = write_result(benchmark.name, payload, out_dir)
    print(f"\n[{benchmark.name}] {elapsed:.1f} s, results in {path}")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for benchmark in BENCHMARKS.values():
            print(f"{benchmark.name:10}  {benchmark.description}")
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    # Every connection the benchmarks (and their child probes) make stays on loopback.
    netguard.install()
    soft, hard = raise_fd_limit()
    print(f"file descriptors: soft limit {soft}, hard limit {hard}")
    mode = "quick" if args.quick else "full"
    for name in args.names or list(BENCHMARKS):
        benchmark = BENCHMARKS[name]
        print(f"\n=== {name} ({mode}): {benchmark.description}")
        run_one(benchmark, benchmark.quick if args.quick else benchmark.full, args.out, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
