"""What every leg kind shares: its context, its progress, and the session contract."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Protocol

from t3probe.clock import Clock
from t3probe.config import LegConfig, ProbeConfig
from t3probe.looplag import LoopLagMonitor
from t3probe.reasons import Phase, ProbeFailure, Reason
from t3probe.recorder import Recorder
from t3probe.resolvers.base import Resolver


@dataclass
class LegContext:
    probe: ProbeConfig
    leg: LegConfig
    recorder: Recorder
    clock: Clock
    lag: LoopLagMonitor
    resolver: Resolver


@dataclass
class SessionProgress:
    """How far the current attempt got: tells connect failures from session deaths."""

    phase: Phase = "dns"
    connected_at: float | None = None
    handshake_started: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def age(self, now: float) -> float | None:
        return None if self.connected_at is None else now - self.connected_at


class Leg(Protocol):
    progress: SessionProgress

    async def run_session(self) -> None:
        """Connect and probe until the first failure, which is raised; never returns."""
        ...

    async def close(self) -> None:
        """Release long-lived resources (sessions, resolvers) at shutdown."""
        ...


def tls_context(leg: LegConfig) -> ssl.SSLContext | None:
    if not leg.uses_tls:
        return None
    # Verification stays on whatever the config says: a custom CA replaces the system
    # trust store for this leg, it never disables checking.
    return ssl.create_default_context(cafile=str(leg.ca_file) if leg.ca_file else None)


def dns_timeout(ctx: LegContext) -> ProbeFailure:
    """A resolver still busy at the connect deadline is a DNS failure, not a path one."""
    ctx.recorder.dns_failure(ctx.leg.name, "timeout")
    return ProbeFailure(
        Reason.DNS_FAILED,
        f"resolving {ctx.leg.host} took over {ctx.probe.effective_connect_timeout:g}s",
    )
