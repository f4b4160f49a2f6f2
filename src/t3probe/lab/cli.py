"""``t3probe lab``: the topology, the probe, a live view, hand or scripted faults."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from aiohttp import web

from t3probe.config import MAX_CONNECTIONS_PER_LEG, parse_listen
from t3probe.daemon import ListenError, stop_on_signals
from t3probe.lab.control import TARGETS, LabControl, make_control_app
from t3probe.lab.scenarios import SCENARIOS, Outcome, run_scenario, select
from t3probe.lab.topology import Lab
from t3probe.lab.view import CLEAR_SCREEN, MAX_EVENTS, event_text, render, snapshot

REFRESH_SECONDS = 1.0
RECENT_EVENTS = MAX_EVENTS
STARTUP_SECONDS = 15.0


def _list_scenarios(out: TextIO) -> int:
    for scenario in SCENARIOS:
        out.write(f"{scenario.name:<18}{scenario.description}\n")
    return 0


async def _wait_until_all_up(lab: Lab) -> bool:
    assert lab.probe is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    while loop.time() < deadline:
        recorder = lab.probe.recorder
        # Slowness is judged against each leg's learnt baseline: scenarios start once
        # every leg has one, or a slow fault would be learnt as normal.
        if recorder.refresh_verdict().verdict == "infra_clean" and recorder.baselines_learnt():
            return True
        await asyncio.sleep(0.2)
    return False


async def _scripted(lab: Lab, names: Sequence[str], out: TextIO) -> int:
    assert lab.probe is not None and lab.parts is not None
    scenarios = select(names)
    if not await _wait_until_all_up(lab):
        out.write("lab: the legs did not all come up; cannot run scenarios\n")
        return 1
    out.write(f"{'scenario':<18}{'phase':<10}{'expected':<46} {'observed':<46} result\n")
    outcomes: list[Outcome] = []
    base = lab.connections
    for scenario in scenarios:
        if await lab.use_connections(scenario.connections or base) and not (
            await _wait_until_all_up(lab)
        ):
            out.write(f"lab: the legs did not come back after the reload for {scenario.name}\n")
            return 1
        for outcome in await run_scenario(scenario, lab.parts, lab.probe.recorder):
            outcomes.append(outcome)
            result = "ok" if outcome.matched else "MISMATCH"
            out.write(
                f"{outcome.scenario:<18}{outcome.phase:<10}{outcome.expected:<46} "
                f"{outcome.observed:<46} {result} ({outcome.seconds:.1f}s)\n"
            )
            out.flush()
    failed = [o for o in outcomes if not o.matched]
    out.write(f"{len(outcomes) - len(failed)} matched, {len(failed)} mismatched\n")
    return 0 if not failed else 1


def _help_lines(probe_url: str, control_url: str) -> list[str]:
    return [
        f"probe: {probe_url}/metrics  {probe_url}/verdict  {probe_url}/events",
        f"inject: curl -X POST {control_url}/lab/fault/TARGET/FAULT   "
        f"clear: curl -X DELETE {control_url}/lab/fault/TARGET (or all)",
        "targets: " + "; ".join(f"{t}: {', '.join(f)}" for t, f in TARGETS.items()),
        f"e.g. curl -X POST {control_url}/lab/fault/edge/blackhole  ·  Ctrl-C stops the lab",
    ]


async def _interactive(
    lab: Lab, control_listen: str, recent: collections.deque[str], out: TextIO
) -> int:
    assert lab.probe is not None and lab.parts is not None
    control = LabControl(lab.parts)
    host, port = parse_listen(control_listen)
    probe_url = f"http://{lab.probe.config.listen_address[0]}:{lab.probe.port}"
    help_lines: list[str] = []
    runner = web.AppRunner(
        make_control_app(control, lambda: help_lines),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=0.5,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        out.write(f"lab: cannot listen on {control_listen} for the control API: {err.strerror}\n")
        return 1
    bound = site.port
    help_lines.extend(_help_lines(probe_url, f"http://{host}:{bound}"))
    stop = stop_on_signals()
    tty = out.isatty()
    if not tty:
        out.write("\n".join(help_lines) + "\n")
    control_url = f"http://{host}:{bound}/lab"
    header = f"t3probe lab · probe {probe_url} · control {control_url}"
    help_line = f"faults by hand: curl {control_url}  ·  Ctrl-C stops the lab"
    try:
        while not stop.is_set():
            if tty:
                faults = ", ".join(f"{t}={f}" for t, f in control.active.items()) or "none"
                screen = render(snapshot(lab.probe), header, faults, recent, help_line)
                out.write(CLEAR_SCREEN + screen + "\n")
            out.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
    finally:
        control.clear_all()
        await runner.cleanup()
    return 0


async def _main(
    scenarios: Sequence[str] | None,
    listen: str,
    control_listen: str,
    out: TextIO,
    connections: int = 1,
) -> int:
    recent: collections.deque[str] = collections.deque(maxlen=RECENT_EVENTS)
    tty = out.isatty()

    def on_line(line: str) -> None:
        text = event_text(json.loads(line), indexed=lab.connections > 1)
        recent.append(text)
        if scenarios is None and not tty:
            out.write(text + "\n")
            out.flush()

    lab = Lab(listen, emit_line=on_line, connections=connections)
    try:
        await lab.start()
    except (OSError, ListenError) as err:
        out.write(f"lab: cannot start: {err}\n")
        return 1
    try:
        if scenarios is not None:
            return await _scripted(lab, scenarios, out)
        return await _interactive(lab, control_listen, recent, out)
    finally:
        await lab.stop()


def run_lab(
    scenarios: Sequence[str] | None,
    listen: str,
    list_only: bool = False,
    control: str = "127.0.0.1:9109",
    connections: int = 1,
) -> int:
    if list_only:
        return _list_scenarios(sys.stdout)
    if scenarios is not None:
        try:
            select(scenarios)
        except KeyError as err:
            names = ", ".join(s.name for s in SCENARIOS)
            print(
                f"t3probe lab: unknown scenario {err.args[0]!r}; choose all or any of: {names}",
                file=sys.stderr,
            )
            return 2
    for flag, value in (("--listen", listen), ("--control", control)):
        try:
            parse_listen(value)
        except ValueError as err:
            print(f"t3probe lab: {flag}: {err}", file=sys.stderr)
            return 2
    if not 1 <= connections <= MAX_CONNECTIONS_PER_LEG:
        print(
            f"t3probe lab: --connections: {connections} is not within 1..{MAX_CONNECTIONS_PER_LEG}",
            file=sys.stderr,
        )
        return 2
    # Per-request access lines from the lab's own servers would bury the live view.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return asyncio.run(_main(scenarios, listen, control, sys.stdout, connections))
