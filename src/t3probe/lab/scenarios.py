"""Scripted faults with their expected verdicts: the lab's proof and the suite's fixture.

Each scenario injects faults through the real proxies and servers, waits for the probe's
verdict to settle on the expected one (or a deadline), then lifts the faults and waits
for the verdict to return to ``infra_clean`` — the recovery is judged too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from t3probe.lab.topology import LB_ADDRESS, LabParts
from t3probe.recorder import Recorder

CDN = ("wan", "cf_edge", "cf_tunnel")
LB_OR_DISPATCH = ("traefik", "dispatch")
POLL_SECONDS = 0.2
HOLD_SECONDS = 0.6
DEADLINE_SECONDS = 15.0
WATCH_SECONDS = 0.1
MAX_VIOLATIONS = 5
MAX_SAMPLES = 1200
FLAP_SECONDS = 10.0
# The lab's heartbeat: healing anywhere within one covers every phase.
HEAL_JITTER_SECONDS = 1.0

Inject = Callable[[LabParts, contextlib.ExitStack], Awaitable[None]]
Check = Callable[[Recorder], str | None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    inject: Inject
    verdict: str
    suspects: tuple[str, ...] = ()
    check: Check | None = None
    # Segments the scenario's own mechanics fault besides the one under test (a forced
    # reconnect through the edge): naming them on the way is not wrong.
    also_faulted: tuple[str, ...] = ()
    # An intermittent fault runs this long and is judged by the share of the time,
    # after the second drop, that the verdict names ``suspects``.
    flap_seconds: float = 0.0
    min_share: float = 0.9
    # Connections per WebSocket leg the scenario needs (None: whatever the lab runs).
    connections: int | None = None


@dataclass(frozen=True)
class Outcome:
    scenario: str
    phase: str
    expected: str
    observed: str
    matched: bool
    seconds: float


def _describe(verdict: str, suspects: tuple[str, ...]) -> str:
    return f"{verdict} [{', '.join(suspects)}]" if suspects else verdict


async def _no_fault(parts: LabParts, stack: contextlib.ExitStack) -> None:
    return None


async def _edge_blackhole(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.edge.blackhole())


async def _edge_reset(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.edge.reset())


async def _lb_refuse(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.lb.refuse())


async def _lb_half_open(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.lb.half_open("downstream"))


async def _dispatch_restart(parts: LabParts, stack: contextlib.ExitStack) -> None:
    # 1012 "service restart": what a dispatch deploy sends every client at once.
    await parts.dispatch.close_all(1012, "service restart")


async def _backend_stall(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.backend.stall())


async def _cdn_and_backend(parts: LabParts, stack: contextlib.ExitStack) -> None:
    await _edge_blackhole(parts, stack)
    await _backend_stall(parts, stack)


async def _bounce_cdn_leg(parts: LabParts) -> None:
    """Force the CDN leg to reconnect, and so to resolve its host again."""
    with parts.edge.reset():
        await asyncio.sleep(0.3)


async def _doh_down(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.doh.down())
    await asyncio.sleep(1.5)  # past the lab's 1 s TTL: only a stale answer is left
    await _bounce_cdn_leg(parts)


async def _doh_lie(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.doh.lie(LB_ADDRESS))
    await asyncio.sleep(1.5)
    await _bounce_cdn_leg(parts)


async def _lb_flapping(parts: LabParts, stack: contextlib.ExitStack) -> None:
    async def flap() -> None:
        # Connections live 1-3 s, then the LB resets them: a flapping ingress.
        while True:
            await asyncio.sleep(random.uniform(1.0, 3.0))
            with parts.lb.reset():
                await asyncio.sleep(0.05)

    task = asyncio.create_task(flap())
    stack.callback(task.cancel)


async def _edge_latency(parts: LabParts, stack: contextlib.ExitStack) -> None:
    # Well above loopback's baseline, well below the 2 s watchdog: slow, never down.
    stack.enter_context(parts.edge.latency(300))


async def _backend_slow(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.backend.slow(500))


async def _lb_reset_half(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.lb.reset_share(2))


def _half_the_connections_burst(recorder: Recorder) -> str | None:
    """Half the connections crossing the LB failed, and a leg said so as one burst."""
    blast = recorder.verdict.blast_radius
    off = {s: blast.get(s) for s in LB_OR_DISPATCH if not 0.4 <= blast.get(s, 0.0) <= 0.6}
    if off:
        return f"blast radius {off}, not about 0.5"
    if not any(e.kind == "burst" for e in recorder.events.since(None)):
        return "no burst event yet"
    return None


def _leg_is(leg: str, *, up: bool, reason: str | None = None) -> Check:
    def check(recorder: Recorder) -> str | None:
        state = recorder.verdict_json()["legs"][leg]
        if state["up"] != up or (reason is not None and state["reason"] != reason):
            return f"{leg} is {'up' if state['up'] else 'down'} ({state['reason']})"
        return None

    return check


def _stale_answer_served(recorder: Recorder) -> str | None:
    problem = _leg_is("cloudflare", up=True)(recorder)
    if problem is not None:
        return problem
    events = [e for e in recorder.events.since(None) if e.leg == "cloudflare" and e.kind == "up"]
    if not events or "stale" not in events[-1].detail:
        return "cloudflare did not come back on a stale DNS answer"
    return None


def _rtt_at_least(leg: str, seconds: float) -> Check:
    def check(recorder: Recorder) -> str | None:
        rtt = recorder.verdict_json()["legs"][leg]["last_rtt_seconds"]
        if rtt is None or rtt < seconds:
            return f"{leg} RTT {rtt} below the injected {seconds}s"
        return None

    return check


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", "no fault: every leg up", _no_fault, "infra_clean"),
    Scenario(
        "cdn_blackhole",
        "the CDN edge forwards nothing (sockets stay open)",
        _edge_blackhole,
        "suspect",
        CDN,
    ),
    Scenario(
        "cdn_reset",
        "the CDN edge resets every connection (tunnel restart)",
        _edge_reset,
        "suspect",
        CDN,
    ),
    Scenario(
        "lb_refuse",
        "the internal LB refuses connections (ingress pods gone)",
        _lb_refuse,
        "suspect",
        LB_OR_DISPATCH,
    ),
    Scenario(
        "lb_half_open",
        "the LB forwards requests but no answers",
        _lb_half_open,
        "suspect",
        LB_OR_DISPATCH,
    ),
    Scenario(
        "dispatch_restart",
        "dispatch closes every WebSocket with 1012",
        _dispatch_restart,
        "suspect",
        LB_OR_DISPATCH,
    ),
    Scenario(
        "backend_stall",
        "the backend process stops answering (event-loop freeze)",
        _backend_stall,
        "suspect",
        ("t3serve",),
    ),
    Scenario(
        "two_faults",
        "CDN blackhole and backend stall at once",
        _cdn_and_backend,
        "suspect",
        (*CDN, "t3serve"),
    ),
    Scenario(
        "doh_down",
        "DoH unreachable while the CDN leg reconnects: stale answer served",
        _doh_down,
        "infra_clean",
        check=_stale_answer_served,
        also_faulted=CDN,
    ),
    Scenario(
        "doh_lie",
        "DoH answers the LB's address (split-horizon collapse)",
        _doh_lie,
        "unknown",
        check=_leg_is("cloudflare", up=False, reason="route_mismatch"),
        also_faulted=CDN,
    ),
    Scenario(
        "lb_flapping",
        "the LB resets every connection after 1-3 s",
        _lb_flapping,
        "suspect",
        LB_OR_DISPATCH,
        flap_seconds=FLAP_SECONDS,
    ),
    Scenario(
        "latency",
        "300 ms added at the CDN edge: slow is not down, but it is degraded",
        _edge_latency,
        "degraded",
        CDN,
        check=_rtt_at_least("cloudflare", 0.3),
    ),
    Scenario(
        "backend_slow",
        "the backend answers in 500 ms instead of a few: degraded, not stalled",
        _backend_slow,
        "degraded",
        ("t3serve",),
        check=_rtt_at_least("t3serve", 0.5),
    ),
    # Last: it reloads the probe with four connections per WebSocket leg.
    Scenario(
        "lb_partial",
        "4 connections per WebSocket leg; the LB resets every other one (half its backends)",
        _lb_reset_half,
        "suspect",
        LB_OR_DISPATCH,
        check=_half_the_connections_burst,
        connections=4,
    ),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


def select(names: Sequence[str]) -> tuple[Scenario, ...]:
    """The scenarios named, in the order given, each once; ``all`` is every scenario.
    KeyError names the first unknown one."""
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    chosen: dict[str, Scenario] = {}
    for name in names:
        if name == "all":
            for scenario in SCENARIOS:
                chosen.setdefault(scenario.name, scenario)
        elif name in by_name:
            chosen.setdefault(name, by_name[name])
        else:
            raise KeyError(name)
    return tuple(chosen.values())


async def _await_verdict(
    recorder: Recorder, verdict: str, suspects: tuple[str, ...], check: Check | None
) -> tuple[bool, str, float]:
    """Poll until the expected verdict holds for HOLD_SECONDS, or the deadline passes."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    held_since: float | None = None
    observed = ""
    while loop.time() - started < DEADLINE_SECONDS:
        current = recorder.refresh_verdict()
        observed = _describe(current.verdict, current.suspects)
        problem = check(recorder) if check is not None else None
        if problem is not None:
            observed += f" ({problem})"
        if (current.verdict, current.suspects) == (verdict, suspects) and problem is None:
            held_since = held_since if held_since is not None else loop.time()
            if loop.time() - held_since >= HOLD_SECONDS:
                return True, observed, loop.time() - started
        else:
            held_since = None
        await asyncio.sleep(POLL_SECONDS)
    return False, observed, loop.time() - started


class VerdictWatch:
    """Samples the verdict throughout a scenario: it may be late, never wrong.

    Naming a segment that was not faulted (at the onset, during, or while recovering),
    or a ``suspect`` verdict with nobody suspected, is a violation.
    """

    def __init__(self, recorder: Recorder, allowed: tuple[str, ...]) -> None:
        self._recorder = recorder
        self._allowed = set(allowed)
        self._started = asyncio.get_running_loop().time()
        self.violations: list[str] = []
        # (wall time, suspects), for judging intermittent faults by share of time.
        self.samples: collections.deque[tuple[float, tuple[str, ...]]] = collections.deque(
            maxlen=MAX_SAMPLES
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while len(self.violations) < MAX_VIOLATIONS:
            verdict = self._recorder.refresh_verdict()
            self.samples.append((time.time(), verdict.suspects))
            wrong = [s for s in verdict.suspects if s not in self._allowed]
            at = loop.time() - self._started
            if wrong:
                self.violations.append(f"named {', '.join(wrong)} at {at:.1f}s")
            elif verdict.verdict == "suspect" and not verdict.suspects:
                self.violations.append(f"suspect with no suspects at {at:.1f}s")
            await asyncio.sleep(WATCH_SECONDS)

    def take(self) -> str | None:
        found, self.violations = self.violations, []
        return "; ".join(found) if found else None


def _judged(outcome: Outcome, violation: str | None) -> Outcome:
    if violation is None:
        return outcome
    return Outcome(
        outcome.scenario,
        outcome.phase,
        outcome.expected,
        f"{outcome.observed} (wrong on the way: {violation})",
        False,
        outcome.seconds,
    )


def _share_convicted(
    scenario: Scenario, recorder: Recorder, watch: VerdictWatch, since: float
) -> tuple[bool, str, float]:
    drops = [e.at for e in recorder.events.since(since) if e.kind == "down"]
    if len(drops) < 2:
        return False, f"only {len(drops)} drop(s) in {scenario.flap_seconds:g}s", 0.0
    after = [suspects for at, suspects in watch.samples if at >= drops[1]]
    wanted = set(scenario.suspects)
    share = sum(wanted <= set(suspects) for suspects in after) / max(1, len(after))
    observed = f"{_describe(scenario.verdict, scenario.suspects)} {share:.0%} of the time"
    return share >= scenario.min_share, observed, scenario.flap_seconds


async def run_scenario(scenario: Scenario, parts: LabParts, recorder: Recorder) -> list[Outcome]:
    outcomes = []
    expected = _describe(scenario.verdict, scenario.suspects)
    if scenario.flap_seconds:
        expected += f" >= {scenario.min_share:.0%} of the time"
    watch = VerdictWatch(recorder, (*scenario.suspects, *scenario.also_faulted))
    watching = asyncio.create_task(watch.run())
    try:
        with contextlib.ExitStack() as stack:
            started = time.time()
            await scenario.inject(parts, stack)
            if scenario.flap_seconds:
                await asyncio.sleep(scenario.flap_seconds)
                matched, observed, seconds = _share_convicted(scenario, recorder, watch, started)
            else:
                matched, observed, seconds = await _await_verdict(
                    recorder, scenario.verdict, scenario.suspects, scenario.check
                )
            outcome = Outcome(scenario.name, "fault", expected, observed, matched, seconds)
            outcomes.append(_judged(outcome, watch.take()))
            # Heal at a random phase of the legs' heartbeats and backoffs: recovery must
            # hold whichever leg happens to come back first.
            await asyncio.sleep(random.uniform(0.0, HEAL_JITTER_SECONDS))
        matched, observed, seconds = await _await_verdict(recorder, "infra_clean", (), None)
        outcome = Outcome(scenario.name, "recovery", "infra_clean", observed, matched, seconds)
        outcomes.append(_judged(outcome, watch.take()))
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    return outcomes
