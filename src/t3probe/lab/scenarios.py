"""Scripted faults with their expected verdicts: the lab's proof and the suite's fixture.

Each scenario injects faults through the real proxies and servers, waits for the probe's
verdict to settle on the expected one (or a deadline), then lifts the faults and waits
for the verdict to return to ``infra_clean`` — the recovery is judged too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from t3probe.lab.topology import LB_ADDRESS, LabParts
from t3probe.recorder import Recorder

CDN = ("wan", "cf_edge", "cf_tunnel")
LB_OR_DISPATCH = ("traefik", "dispatch")
POLL_SECONDS = 0.2
HOLD_SECONDS = 0.6
DEADLINE_SECONDS = 15.0

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


async def _edge_latency(parts: LabParts, stack: contextlib.ExitStack) -> None:
    stack.enter_context(parts.edge.latency(100))


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
    ),
    Scenario(
        "doh_lie",
        "DoH answers the LB's address (split-horizon collapse)",
        _doh_lie,
        "unknown",
        check=_leg_is("cloudflare", up=False, reason="route_mismatch"),
    ),
    Scenario(
        "latency",
        "100 ms added at the CDN edge: slow is not down",
        _edge_latency,
        "infra_clean",
        check=_rtt_at_least("cloudflare", 0.1),
    ),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


def select(name: str) -> tuple[Scenario, ...]:
    if name == "all":
        return SCENARIOS
    for scenario in SCENARIOS:
        if scenario.name == name:
            return (scenario,)
    raise KeyError(name)


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


async def run_scenario(scenario: Scenario, parts: LabParts, recorder: Recorder) -> list[Outcome]:
    outcomes = []
    expected = _describe(scenario.verdict, scenario.suspects)
    with contextlib.ExitStack() as stack:
        await scenario.inject(parts, stack)
        matched, observed, seconds = await _await_verdict(
            recorder, scenario.verdict, scenario.suspects, scenario.check
        )
        outcomes.append(Outcome(scenario.name, "fault", expected, observed, matched, seconds))
    matched, observed, seconds = await _await_verdict(recorder, "infra_clean", (), None)
    outcomes.append(Outcome(scenario.name, "recovery", "infra_clean", observed, matched, seconds))
    return outcomes
