"""One timeout budget per leg, computed once from the config, and what a timeout means."""

from __future__ import annotations

from dataclasses import dataclass

from t3probe.config import AnyLegConfig, DohResolverConfig, ProbeConfig, SystemResolverConfig
from t3probe.reasons import Phase, ProbeFailure, timeout_reason

# A system lookup gets most of the connect budget, so a slow resolver is reported as a
# DNS failure instead of running into the connect deadline.
SYSTEM_RESOLVER_SHARE = 0.8


@dataclass(frozen=True)
class LegBudget:
    """Seconds each step of a leg may take."""

    dns: float
    # From the first DNS query to a usable connection (TCP, TLS, upgrade).
    connect: float
    # No successful answer for this long: a real client would have reconnected.
    watchdog: float

    @classmethod
    def of(cls, probe: ProbeConfig, leg: AnyLegConfig) -> LegBudget:
        connect = probe.effective_connect_timeout
        resolver = leg.resolver
        if isinstance(resolver, SystemResolverConfig):
            dns = SYSTEM_RESOLVER_SHARE * connect
        elif isinstance(resolver, DohResolverConfig):
            # The config guarantees every server's timeout fits inside the connect budget.
            dns = len(resolver.servers) * resolver.timeout_seconds
        else:
            dns = connect
        return cls(
            dns=dns,
            connect=connect,
            watchdog=probe.watchdog_seconds,
        )


def timeout_failure(phase: Phase, seconds: float, what: str) -> ProbeFailure:
    """The failure for ``what`` running out of its ``seconds`` while in ``phase``."""
    return ProbeFailure(
        timeout_reason(phase), f"{what}: no progress in {seconds:g}s (phase {phase})"
    )
