"""One scale level under cProfile: where the probe's event loop spends its time.

``python -m benchmarks.profile_scale [--legs N] [--heartbeat S] [--window S] [--top K]``
runs ``t3probe run`` with N WebSocket legs against a local echo (as the scale benchmark
does, one /metrics scrape in the window), the child under ``cProfile`` (its main thread:
the event loop), then prints the level's figures and the top functions by own time and
by cumulative time. The profile covers the whole run, ramp included.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import pstats
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import raise_fd_limit
from benchmarks.scale import FULL, run_level
from t3probe import netguard


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_scale",
        description="one scale level with the probe under cProfile (loopback only)",
    )
    parser.add_argument("--legs", type=int, default=1000, help="WebSocket legs (default 1000)")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--top", type=int, default=25, help="functions listed per ordering")
    parser.add_argument("--out", type=Path, help="keep the .prof file here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    netguard.install()
    soft, hard = raise_fd_limit()
    options = dataclasses.replace(
        FULL,
        heartbeat=args.heartbeat,
        watchdog=2 * args.heartbeat,
        window_seconds=args.window,
        up_deadline_seconds=max(90.0, args.legs / 50),
    )
    with tempfile.TemporaryDirectory(prefix="t3probe-profile-") as workdir:
        prof = args.out or Path(workdir) / "probe.prof"
        result = asyncio.run(run_level(args.legs, options, Path(workdir), True, prof))
        print(json.dumps(result, indent=1, default=str))
        print(f"file descriptors: soft {soft}, hard {hard}")
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(str(prof), stream=out).sort_stats(order).print_stats(args.top)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
