"""CPU per heartbeat against the aiohttp floor (issue #18), side by side in one run.

``python -m benchmarks.floor [--legs 300] [--seconds 30] [--warmup 5] [--out DIR]``
starts one local echo (in this process, caps raised as the scale benchmark does, no
reserved slots) and then runs, one after the other against that same echo, each in its
own child process:

1. **the floor** (:mod:`benchmarks.floorclient`): a plain aiohttp client, N ``ws_connect``
   on one ``ClientSession``, a text message per heartbeat each, its echo awaited, one
   Histogram observation per echo, on asyncio's loop;
2. **t3probe** with N WebSocket legs, ``T3PROBE_EVENT_LOOP=asyncio``;
3. **t3probe** with ``T3PROBE_EVENT_LOOP=uvloop``, when uvloop is installed
   (``t3probe[fast]``); otherwise its row says "uvloop not installed".

For each child the CPU (the on-CPU time of its threads from ``/proc/PID/task/*/schedstat``,
with utime + stime beside it) is counted over a steady window of the same length for all
three: it starts once every connection is up and a warm-up has
passed, so the ramp (imports, dials, handshakes) is excluded. The heartbeats answered in
the window come from the child itself (the floor's own tally, t3probe's
``t3probe_rtt_seconds_count``), read just outside the window. RSS per connection is the
RSS at the end of the window less the RSS of the same child holding one connection,
divided by N - 1. Loopback only; every child is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import psutil

from benchmarks.common import (
    LOOPBACK,
    REPO_ROOT,
    RESULTS_DIR,
    child_env,
    free_port,
    parse_samples,
    raise_fd_limit,
    sample_resources,
    sample_sum,
    stop_process,
    write_result,
)
from benchmarks.probeproc import ProbeProcess
from benchmarks.scale import ScaleOptions, echo_limits, scale_config
from t3probe import netguard
from t3probe.echo import WS_PATH, EchoServer, serve_echo

CONTENDERS = ("floor", "t3probe_asyncio", "t3probe_uvloop")


@dataclass(frozen=True)
class FloorOptions:
    legs: int = 300
    window_seconds: float = 30.0
    # After the last connection is up: t3probe freezes the collector's generations once
    # every leg has dialled and skips its verdict refresh once every leg is healthy.
    warmup_seconds: float = 5.0
    heartbeat: float = 1.0
    # How long the one-connection child runs before its RSS is read.
    baseline_seconds: float = 2.0
    up_deadline_seconds: float = 90.0


class _Child(Protocol):
    @property
    def pid(self) -> int: ...

    async def start(self) -> None: ...

    async def wait_up(self, legs: int, deadline: float) -> bool: ...

    async def count(self) -> tuple[float, int]:
        """Heartbeats answered and connections dropped since start."""
        ...

    async def stop(self) -> int | None: ...

    def stderr_tail(self) -> str: ...


class FloorChild:
    """``python -m benchmarks.floorclient`` as a child, asked for its tally on stdin."""

    def __init__(
        self, url: str, legs: int, heartbeat: float, workdir: Path, profile: Path | None = None
    ) -> None:
        self._args = [url, str(legs), "--heartbeat", str(heartbeat)]
        # cProfile output, written when the client exits at the end of its input.
        self._profiler = [] if profile is None else ["-m", "cProfile", "-o", str(profile)]
        self._stderr = workdir / "floor.stderr"
        self.process: asyncio.subprocess.Process | None = None
        self.loop_name = "asyncio"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self._stderr.parent.mkdir(parents=True, exist_ok=True)
        with self._stderr.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self._profiler,
                "-m",
                "benchmarks.floorclient",
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=child_env(),
                cwd=REPO_ROOT,
            )

    async def _line(self, within: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(within):
            line = await self.process.stdout.readline()
        if not line:
            raise EOFError("the floor client exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def wait_up(self, legs: int, deadline: float) -> bool:
        try:
            answer = await self._line(max(0.0, deadline - time.monotonic()))
        except (TimeoutError, EOFError, ValueError):
            return False
        return bool(answer.get("up") == legs)

    async def count(self) -> tuple[float, int]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"count\n")
        await self.process.stdin.drain()
        answer = await self._line(10.0)
        return float(answer["echoes"]), int(answer["drops"])

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.stdin is not None:
            # End of input is the client's signal to close its sockets and exit.
            with contextlib.suppress(ConnectionError):
                self.process.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    return await self.process.wait()
        return await stop_process(self.process)

    def stderr_tail(self) -> str:
        return self._stderr.read_text(errors="replace")[-2000:] if self._stderr.exists() else ""


class T3probeChild:
    """``t3probe run`` with N WebSocket legs on the event loop ``loop`` asks for."""

    def __init__(
        self,
        echo_port: int,
        legs: int,
        options: FloorOptions,
        loop: str,
        workdir: Path,
        session: aiohttp.ClientSession,
        profile: Path | None = None,
    ) -> None:
        port = free_port()
        scale = ScaleOptions(heartbeat=options.heartbeat, watchdog=2 * options.heartbeat)
        self._probe = ProbeProcess(
            scale_config(legs, echo_port, f"{LOOPBACK}:{port}", scale),
            workdir,
            port,
            profile,
            env={"T3PROBE_EVENT_LOOP": loop},
        )
        self._session = session
        self.loop_name = "?"

    @property
    def pid(self) -> int:
        return self._probe.pid

    async def start(self) -> None:
        await self._probe.start()

    async def wait_up(self, legs: int, deadline: float) -> bool:
        return await self._probe.wait_all_up(legs, deadline)

    async def count(self) -> tuple[float, int]:
        text, _ = await self._probe.metrics(self._session)
        samples = parse_samples(text)
        # The loop the probe says it runs on, not the one it was asked for.
        for (name, labels), value in samples.items():
            if name == "t3probe_event_loop_info" and value == 1:
                self.loop_name = dict(labels).get("loop", "?")
        return sample_sum(samples, "t3probe_rtt_seconds_count"), len(self._probe.downs)

    async def stop(self) -> int | None:
        return await self._probe.stop()

    def stderr_tail(self) -> str:
        return self._probe.stderr_tail()


async def _timed_count(child: _Child) -> tuple[float, int, float]:
    started = time.monotonic()
    answered, drops = await child.count()
    return answered, drops, (started + time.monotonic()) / 2


async def _rss_of_one(child: _Child, options: FloorOptions) -> int | None:
    """RSS of ``child`` holding a single connection, for the per-connection figure."""
    try:
        await child.start()
        if not await child.wait_up(1, time.monotonic() + options.up_deadline_seconds):
            return None
        await asyncio.sleep(options.baseline_seconds)
        return sample_resources(child.pid).rss_bytes
    finally:
        await child.stop()


async def _measure(child: _Child, legs: int, options: FloorOptions) -> dict[str, Any]:
    result: dict[str, Any] = {"legs": legs}
    try:
        started = time.monotonic()
        await child.start()
        if not await child.wait_up(legs, started + options.up_deadline_seconds):
            result["error"] = f"not every connection up within {options.up_deadline_seconds} s"
            result["stderr_tail"] = child.stderr_tail()
            return result
        result["ramp_seconds"] = time.monotonic() - started
        await asyncio.sleep(options.warmup_seconds)
        answered_before, drops_before, counted_before = await _timed_count(child)
        # Let what the count itself cost (a /metrics render for t3probe) settle first.
        await asyncio.sleep(0.5)
        before = sample_resources(child.pid)
        split_before = psutil.Process(child.pid).cpu_times()
        precise_before = schedstat_seconds(child.pid)
        window_started = time.monotonic()
        await asyncio.sleep(options.window_seconds)
        precise_after = schedstat_seconds(child.pid)
        after = sample_resources(child.pid)
        split_after = psutil.Process(child.pid).cpu_times()
        window = time.monotonic() - window_started
        answered_after, drops_after, counted_after = await _timed_count(child)
        # The counts bracket the window a little wider than the CPU samples: scaled to it.
        answered = (answered_after - answered_before) * window / (counted_after - counted_before)
        ticks = after.cpu_seconds - before.cpu_seconds
        precise = (
            precise_after - precise_before
            if precise_before is not None and precise_after is not None
            else None
        )
        cpu = ticks if precise is None else precise
        result.update(
            {
                "window_seconds": window,
                "cpu_seconds": cpu,
                "cpu_from": "utime+stime" if precise is None else "schedstat",
                "cpu_seconds_utime_stime": ticks,
                # In Python and C code (user) or in the kernel (system: on loopback a send
                # also runs the receiving side's TCP stack).
                "cpu_user_seconds": split_after.user - split_before.user,
                "cpu_system_seconds": split_after.system - split_before.system,
                "cpu_percent_of_one_core": 100.0 * cpu / window,
                "heartbeats_answered": answered,
                "heartbeats_expected": legs * window / options.heartbeat,
                "cpu_us_per_heartbeat": 1e6 * cpu / answered if answered > 0 else None,
                "rss_mib": after.rss_bytes / (1 << 20),
                "drops_in_window": drops_after - drops_before,
            }
        )
        return result
    finally:
        result["exit_code"] = await child.stop()


async def _echo_idle(echo: EchoServer) -> None:
    """Wait (10 s at most) for the echo to let go of the previous child's connections."""
    for _ in range(100):
        if not echo.connection_count:
            return
        await asyncio.sleep(0.1)


def uvloop_version() -> str | None:
    """uvloop's version if the children can import it (``t3probe[fast]``), else None."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def schedstat_seconds(pid: int) -> float | None:
    """On-CPU time of every thread of ``pid`` from /proc/PID/task/*/schedstat, in
    nanoseconds: utime + stime count 10 ms ticks, coarse for a window of a few seconds.
    None where the kernel keeps no schedstat. A thread that exits takes its time along,
    so the window's figure from utime + stime is kept beside it."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return total / 1e9


async def run(
    options: FloorOptions, workdir: Path, profile_dir: Path | None = None
) -> dict[str, Any]:
    """The contenders one after the other; with ``profile_dir``, each N-connection child
    runs under cProfile and leaves ``NAME.prof`` there (its CPU figures then include the
    profiler's own overhead)."""
    uvloop = uvloop_version()
    load_before = os.getloadavg()
    echo = await serve_echo(LOOPBACK, 0, echo_limits(options.legs))
    url = f"ws://{LOOPBACK}:{echo.port}{WS_PATH}"
    rows: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:

            def child(
                name: str, legs: int, tag: str, profile: Path | None = None
            ) -> FloorChild | T3probeChild:
                where = workdir / f"{name}-{tag}"
                if name == "floor":
                    return FloorChild(url, legs, options.heartbeat, where, profile)
                loop = name.removeprefix("t3probe_")
                return T3probeChild(echo.port, legs, options, loop, where, session, profile)

            for name in CONTENDERS:
                if name == "t3probe_uvloop" and uvloop is None:
                    rows.append({"contender": name, "skipped": "uvloop not installed"})
                    print(f"  {name}: uvloop not installed", flush=True)
                    continue
                prof = None if profile_dir is None else profile_dir / f"{name}.prof"
                measured = child(name, options.legs, "n", prof)
                row = {"contender": name, **await _measure(measured, options.legs, options)}
                row["event_loop"] = measured.loop_name
                await _echo_idle(echo)
                one = await _rss_of_one(child(name, 1, "one"), options)
                await _echo_idle(echo)
                row["rss_one_connection_mib"] = None if one is None else one / (1 << 20)
                if one is not None and "rss_mib" in row and options.legs > 1:
                    extra = row["rss_mib"] * (1 << 20) - one
                    row["rss_kib_per_connection"] = extra / (options.legs - 1) / 1024
                rows.append(row)
                print(f"  {name}: {_brief(row)}", flush=True)
    finally:
        await echo.stop()
    floor_cost = rows[0].get("cpu_us_per_heartbeat")
    for row in rows:
        if "cpu_us_per_heartbeat" in row:
            cost = row["cpu_us_per_heartbeat"]
            row["ratio_to_floor"] = cost / floor_cost if cost and floor_cost else None
    return {
        "options": asdict(options),
        "profiled": profile_dir is not None,
        "uvloop": uvloop,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "contenders": rows,
    }


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"error: {row['error']}"
    return f"{row['cpu_seconds']:.2f} s CPU, {row.get('cpu_us_per_heartbeat') or 0:.0f} µs/hb"


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table, a row per contender."""
    lines = [
        "| contender | event loop | legs | window | CPU (user + system) | CPU per heartbeat "
        "| x floor "
        "| RSS | RSS per connection | heartbeats answered | drops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["contenders"]:
        name = row["contender"]
        if "skipped" in row or "error" in row:
            why = row.get("skipped") or row["error"]
            lines.append(f"| {name} | {why} |" + " - |" * 9)
            continue
        ratio = _cell(row["ratio_to_floor"], ".2f")
        lines.append(
            f"| {name} | {row['event_loop']} | {row['legs']} | {row['window_seconds']:.1f} s "
            f"| {row['cpu_seconds']:.2f} s ({row['cpu_user_seconds']:.2f} + "
            f"{row['cpu_system_seconds']:.2f}) | {_cell(row['cpu_us_per_heartbeat'], '.0f')} µs "
            f"| {ratio}x | {row['rss_mib']:.0f} MiB "
            f"| {_cell(row.get('rss_kib_per_connection'), '.0f')} KiB "
            f"| {row['heartbeats_answered']:.0f} of {row['heartbeats_expected']:.0f} "
            f"| {row['drops_in_window']} |"
        )
    before = " ".join(f"{x:.2f}" for x in result["load_average_before"])
    after = " ".join(f"{x:.2f}" for x in result["load_average_after"])
    lines.append("")
    lines.append(f"load average (1, 5, 15 min): {before} before, {after} after")
    return "\n".join(lines)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor",
        description="t3probe's CPU per heartbeat against a plain aiohttp client (the floor)"
        " and with uvloop, one echo, one run, loopback only; figures, not pass/fail",
    )
    defaults = FloorOptions()
    parser.add_argument("--legs", type=_positive(int), default=defaults.legs, help="default 300")
    parser.add_argument(
        "--seconds",
        type=_positive(float),
        default=defaults.window_seconds,
        help="measured window, after every connection is up and the warm-up (default 30)",
    )
    parser.add_argument(
        "--warmup",
        type=_positive(float),
        default=defaults.warmup_seconds,
        help="seconds between the last connection up and the window (default 5)",
    )
    parser.add_argument(
        "--heartbeat", type=_positive(float), default=defaults.heartbeat, help="default 1 s"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, metavar="DIR", help="where floor.json goes"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run each child under cProfile, keep NAME.prof in DIR and print the top"
        " functions (the CPU figures then include the profiler's overhead)",
    )
    parser.add_argument("--top", type=_positive(int), default=25, help="functions per profile")
    args = parser.parse_args(argv)
    netguard.install()
    soft, hard = raise_fd_limit()
    if args.legs + 200 > soft:  # the child and the echo each hold one socket per leg
        parser.error(f"--legs {args.legs}: the fd soft limit {soft} (hard {hard}) is too low")
    options = FloorOptions(
        legs=args.legs,
        window_seconds=args.seconds,
        warmup_seconds=args.warmup,
        heartbeat=args.heartbeat,
    )
    with tempfile.TemporaryDirectory(prefix="t3probe-floor-") as workdir:
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(options, Path(workdir), args.profile))
    result["markdown"] = markdown(result)
    path = write_result("floor", result, args.out)
    print(result["markdown"])
    print(f"\nresults in {path}")
    if args.profile is not None:
        for prof in sorted(args.profile.glob("*.prof")):
            out = io.StringIO()
            pstats.Stats(str(prof), stream=out).sort_stats("tottime").print_stats(args.top)
            print(f"\n## {prof.stem}: top {args.top} by own time\n{out.getvalue()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
