"""What every leg kind shares: its context, its progress, and the session contract."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Protocol

from t3probe.clock import Clock
from t3probe.config import AnyLegConfig, ProbeConfig
from t3probe.legs.budget import LegBudget, timeout_failure
from t3probe.looplag import LoopLagMonitor
from t3probe.neighbours import Neighbours, Wait
from t3probe.reasons import DnsFailure, Phase, ProbeFailure
from t3probe.recorder import Recorder
from t3probe.resolvers.base import Resolver


@dataclass
class LegContext:
    probe_config: ProbeConfig
    leg: AnyLegConfig
    budget: LegBudget
    recorder: Recorder
    clock: Clock
    lag: LoopLagMonitor
    resolver: Resolver
    neighbours: Neighbours | None = None
    # Which of the leg's connections this is (0 .. connections-1): each runs on its own.
    connection: int = 0

    async def pause(self, kind: Wait, seconds: float, since: float | None = None) -> bool:
        """Sleep, unless a neighbour's news (also news since ``since``, monotonic) says
        to act now (then True)."""
        if self.neighbours is None:
            await asyncio.sleep(seconds)
            return False
        return await self.neighbours.wait(
            self.leg.name, kind, seconds, since=since, connection=self.connection
        )

    def timed_out(self, phase: Phase, seconds: float, what: str) -> ProbeFailure:
        """The failure for a deadline passing in ``phase``; a DNS one is also counted."""
        if phase == "dns":
            self.recorder.dns_failure(self.leg.name, DnsFailure.TIMEOUT)
        return timeout_failure(phase, seconds, what)


@dataclass
class SessionProgress:
    """How far the current attempt got: tells connect failures from session deaths."""

    phase: Phase = "dns"
    connected_at: float | None = None
    upgrade_started: float | None = None
    # Monotonic time of the latest success (or of the attempt's start): the probe's own
    # stalls before it cannot explain a failure after it.
    evidence_since: float = 0.0
    # The resolver had no fresh answer and the connection used a stale one (RFC 8767).
    dns_stale: bool = False
    # Where the resolver sent this attempt; kept to tell local from path errors.
    addresses: tuple[str, ...] = ()
    # Completes when the connection's transport is lost, with the OS error (a RST) or
    # without one (a FIN): the only place aiohttp keeps the difference for a WebSocket.
    connection_lost: asyncio.Future[None] | None = None
    # Where a redirect sent the upgrade ("302 to https://host/..."): never a route.
    redirected: str | None = None
    # The proof header the last response lacked; set by a trace hook, checked by the leg.
    proof_missing: str | None = None

    def age(self, now: float) -> float | None:
        return None if self.connected_at is None else now - self.connected_at

    def lost_by_reset(self) -> bool:
        """Whether the connection ended with an OS error such as ECONNRESET."""
        lost = self.connection_lost
        if lost is None or not lost.done() or lost.cancelled():
            return False
        return lost.exception() is not None

    def up_detail(self) -> str:
        return "dns answer served stale" if self.dns_stale else ""


class Leg(Protocol):
    progress: SessionProgress

    async def run_session(self) -> None:
        """Connect and probe until the first failure, which is raised; never returns."""
        ...

    async def close(self) -> None:
        """Release long-lived resources (sessions, resolvers) at shutdown."""
        ...


def tls_context(leg: AnyLegConfig) -> ssl.SSLContext | None:
    if not leg.uses_tls:
        return None
    # Verification stays on whatever the config says: a custom CA replaces the system
    # trust store for this leg, it never disables checking.
    return ssl.create_default_context(cafile=str(leg.ca_file) if leg.ca_file else None)
