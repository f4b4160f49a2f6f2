"""One scale level: ``python -m benchmarks.level LEGS [--heartbeat S] [--scrape]``.

The figures of :func:`benchmarks.scale.run_level` as JSON, for a level the full scale
series would not reach or to compare one change quickly (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import raise_fd_limit
from benchmarks.scale import FULL, run_level
from t3probe import netguard


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.level", description=__doc__)
    parser.add_argument("legs", type=int, help="WebSocket legs to one local echo")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--scrape", action="store_true", help="one /metrics scrape in the window")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the probe's config and stderr in DIR"
    )
    args = parser.parse_args(argv)
    netguard.install()
    soft, hard = raise_fd_limit()
    if args.legs + 200 > soft:  # the probe and the echo each hold one socket per leg
        print(f"fd soft limit {soft} (hard {hard}) is below what {args.legs} legs need")
    options = dataclasses.replace(
        FULL,
        heartbeat=args.heartbeat,
        watchdog=2 * args.heartbeat,
        window_seconds=args.window,
        up_deadline_seconds=max(90.0, args.legs / 50),
    )
    with tempfile.TemporaryDirectory(prefix="t3probe-level-") as workdir:
        where = args.keep if args.keep is not None else Path(workdir)
        result = asyncio.run(run_level(args.legs, options, where, args.scrape))
    result["fd_limit"] = [soft, hard]
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
