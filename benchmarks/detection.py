"""Detection latency per fault kind: injection to drop event, t3probe beside the others.

One fault is injected at a random phase of the heartbeat cycle into the proxies every
tool goes through, and each tool's first "down" after the injection is timed on one
monotonic clock. The fault is held until every affected tool has noticed (or a
deadline), lifted, and the next repetition waits until every tool is back up.

Fault kinds, as each tool meets them:

* ``reset`` — both proxies RST every connection (and every new one while it lasts);
* ``close`` — the echo sends a close frame (1012) on every WebSocket; HTTP has no close
  frame, so the HTTP proxy closes its connections cleanly (FIN) instead;
* ``refused`` — both proxies stop listening (existing connections are reset);
* ``blackhole`` — both proxies forward nothing and keep every socket open;
* ``stall`` — the backend process hangs every request (WebSocket tools unaffected).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.blackbox import ProbeResult, drive_scrapes
from benchmarks.common import fmt_ms, fmt_ratio, print_table, ratio, summary
from benchmarks.targets import BLACKBOX_MODULE, Targets, Tools, loopback_targets, running_tools
from t3probe.events import LegEvent

FAULT_KINDS = ("reset", "close", "refused", "blackhole", "stall")
PATH_DETECTORS = ("t3probe_ws", "naive_ws", "t3probe_http", "naive_http", "blackbox_http")
HTTP_DETECTORS = ("t3probe_http", "naive_http", "blackbox_http")
# Like for like first (same leg kind), then blackbox_exporter against each t3probe leg.
RATIO_PAIRS = (
    ("naive_ws", "t3probe_ws"),
    ("naive_http", "t3probe_http"),
    ("blackbox_http", "t3probe_http"),
    ("blackbox_http", "t3probe_ws"),
)
RECOVERY_DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.01


@dataclass(frozen=True)
class DetectionOptions:
    repetitions: int = 10
    heartbeat: float = 1.0
    watchdog: float = 2.0
    kinds: tuple[str, ...] = FAULT_KINDS
    with_blackbox: bool = True
    seed: int = 20240601


FULL = DetectionOptions()
QUICK = DetectionOptions(repetitions=1)


class Detector:
    """One tool's view of one path: its up/down transitions on the monotonic clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "unknown"
        self.downs: list[tuple[float, str]] = []

    def up(self, at: float) -> None:
        self.state = "up"

    def down(self, at: float, reason: str) -> None:
        self.state = "down"
        self.downs.append((at, reason))

    def first_down_after(self, t0: float) -> tuple[float, str] | None:
        return next(((at, reason) for at, reason in self.downs if at >= t0), None)


def _wire(tools: Tools, detectors: dict[str, Detector]) -> None:
    legs = {"ws": detectors["t3probe_ws"], "http": detectors["t3probe_http"]}

    def on_event(event: LegEvent) -> None:
        # Timed on arrival: the recorder calls listeners synchronously with the drop.
        detector = legs[event.leg]
        if event.kind == "down":
            detector.down(time.monotonic(), str(event.reason))
        else:
            detector.up(time.monotonic())

    tools.probe.recorder.subscribe(on_event)
    # The tools started before these hooks: take their current state as the start.
    for leg, state in tools.probe.recorder.verdict_json()["legs"].items():
        if state["up"]:
            legs[leg].up(time.monotonic())
    for name, stats in (("naive_ws", tools.naive_ws), ("naive_http", tools.naive_http)):
        if stats.is_up:
            detectors[name].up(time.monotonic())
    tools.naive_ws.on_up = detectors["naive_ws"].up
    tools.naive_ws.on_down = detectors["naive_ws"].down
    tools.naive_http.on_up = detectors["naive_http"].up
    tools.naive_http.on_down = detectors["naive_http"].down


def _blackbox_result(detector: Detector) -> Callable[[ProbeResult], None]:
    def on_result(result: ProbeResult) -> None:
        if result.success:
            detector.up(result.finished)
        else:
            detector.down(result.finished, result.error or "probe_success 0")

    return on_result


@contextlib.contextmanager
def _inject(kind: str, targets: Targets, background: set[asyncio.Task[Any]]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if kind == "reset":
            stack.enter_context(targets.ws_proxy.reset())
            stack.enter_context(targets.http_proxy.reset())
        elif kind == "close":
            closing = asyncio.ensure_future(targets.echo.close_all(1012, "benchmark close"))
            background.add(closing)
            closing.add_done_callback(background.discard)
            stack.enter_context(targets.http_proxy.close())
        elif kind == "refused":
            stack.enter_context(targets.ws_proxy.refuse())
            stack.enter_context(targets.http_proxy.refuse())
        elif kind == "blackhole":
            stack.enter_context(targets.ws_proxy.blackhole())
            stack.enter_context(targets.http_proxy.blackhole())
        elif kind == "stall":
            stack.enter_context(targets.backend.stall())
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        yield


def _all_detected(
    detectors: dict[str, Detector], affected: list[str], t0: float
) -> Callable[[], bool]:
    return lambda: all(detectors[n].first_down_after(t0) is not None for n in affected)


async def _until(predicate: Callable[[], bool], deadline: float) -> bool:
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


async def run(options: DetectionOptions, workdir: Path) -> dict[str, Any]:
    rng = random.Random(options.seed)
    names = [n for n in PATH_DETECTORS if options.with_blackbox or not n.startswith("blackbox")]
    detectors = {name: Detector(name) for name in names}
    samples: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in options.kinds}
    reasons: dict[str, dict[str, dict[str, int]]] = {
        k: {n: {} for n in names} for k in options.kinds
    }
    missed: dict[str, dict[str, int]] = {k: dict.fromkeys(names, 0) for k in options.kinds}
    hold = options.watchdog + options.heartbeat + 3.0
    background: set[asyncio.Task[Any]] = set()
    async with (
        loopback_targets() as targets,
        running_tools(
            targets, options.heartbeat, options.watchdog, workdir, options.with_blackbox
        ) as tools,
    ):
        _wire(tools, detectors)
        scraper: asyncio.Task[None] | None = None
        if tools.blackbox is not None:
            scraper = asyncio.create_task(
                drive_scrapes(
                    tools.blackbox,
                    targets.http_url,
                    BLACKBOX_MODULE,
                    options.heartbeat,
                    _blackbox_result(detectors["blackbox_http"]),
                )
            )
        try:
            for kind in options.kinds:
                affected = [n for n in names if kind != "stall" or n in HTTP_DETECTORS]
                for _ in range(options.repetitions):
                    recovered = await _until(
                        lambda: all(d.state == "up" for d in detectors.values()),
                        time.monotonic() + RECOVERY_DEADLINE_SECONDS,
                    )
                    if not recovered:
                        states = {n: d.state for n, d in detectors.items()}
                        raise RuntimeError(f"tools did not recover before {kind}: {states}")
                    # A random phase: the injection must not line up with any heartbeat.
                    await asyncio.sleep(0.3 + rng.uniform(0, options.heartbeat))
                    t0 = time.monotonic()
                    with _inject(kind, targets, background):
                        await _until(_all_detected(detectors, affected, t0), t0 + hold)
                    for name in affected:
                        found = detectors[name].first_down_after(t0)
                        if found is None:
                            missed[kind][name] += 1
                            continue
                        samples[kind][name].append(found[0] - t0)
                        reason = found[1]
                        reasons[kind][name][reason] = reasons[kind][name].get(reason, 0) + 1
        finally:
            if scraper is not None:
                scraper.cancel()
                await asyncio.gather(scraper, return_exceptions=True)
            await asyncio.gather(*background, return_exceptions=True)
    return _report(options, names, samples, reasons, missed)


def _report(
    options: DetectionOptions,
    names: list[str],
    samples: dict[str, dict[str, list[float]]],
    reasons: dict[str, dict[str, dict[str, int]]],
    missed: dict[str, dict[str, int]],
) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    rows: list[list[object]] = []
    ratio_rows: list[list[object]] = []
    for kind in options.kinds:
        per_tool: dict[str, Any] = {}
        for name in names:
            if kind == "stall" and name not in HTTP_DETECTORS:
                continue
            stats = summary(samples[kind][name])
            per_tool[name] = {
                "seconds": stats,
                "missed": missed[kind][name],
                "reasons": reasons[kind][name],
                "samples": [round(s, 4) for s in samples[kind][name]],
            }
            rows.append(
                [
                    kind,
                    name,
                    stats["n"],
                    missed[kind][name],
                    fmt_ms(stats["min"]),
                    fmt_ms(stats["median"]),
                    fmt_ms(stats["p99"]),
                    ",".join(sorted(reasons[kind][name])),
                ]
            )
        ratios = {
            f"{slow}/{fast}": ratio(
                per_tool[slow]["seconds"]["median"], per_tool[fast]["seconds"]["median"]
            )
            for slow, fast in RATIO_PAIRS
            if slow in per_tool and fast in per_tool
        }
        kinds[kind] = {"tools": per_tool, "median_ratios": ratios}
        ratio_rows.extend([kind, pair, fmt_ratio(value)] for pair, value in ratios.items())
    print_table(
        f"Detection latency, injection to drop (ms), {options.repetitions} repetitions,"
        f" heartbeat {options.heartbeat:g} s, watchdog {options.watchdog:g} s",
        ["fault", "tool", "n", "missed", "min", "median", "p99", "reasons"],
        rows,
    )
    print_table("Detection latency, median ratios", ["fault", "ratio", "value"], ratio_rows)
    return {"options": asdict(options), "kinds": kinds}
