"""Builds a leg's resolver from its config."""

from __future__ import annotations

from t3probe.clock import Clock
from t3probe.config import (
    DohResolverConfig,
    LegConfig,
    PinnedResolverConfig,
    ProbeConfig,
    SystemResolverConfig,
)
from t3probe.resolvers.base import DnsFailureSink, Resolver
from t3probe.resolvers.pinned import PinnedResolver
from t3probe.resolvers.system import SystemResolver


def build_resolver(
    probe: ProbeConfig, leg: LegConfig, on_failure: DnsFailureSink, clock: Clock
) -> Resolver:
    config = leg.resolver
    if isinstance(config, PinnedResolverConfig):
        return PinnedResolver(str(config.address))
    if isinstance(config, DohResolverConfig):
        from t3probe.resolvers.doh import DohResolver

        return DohResolver.from_config(config, on_failure=on_failure, clock=clock)
    assert isinstance(config, SystemResolverConfig)
    # Inside the leg's connect deadline, so a slow resolver is reported as DNS.
    return SystemResolver(on_failure, timeout=0.8 * probe.effective_connect_timeout)
