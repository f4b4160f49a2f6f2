"""Resolver kinds: the one table from a resolver config ``kind`` to its builder.

Adding a kind: its config class in :mod:`t3probe.config` (the ``ResolverConfig``
union), its module here in ``resolvers/``, and one entry in ``RESOLVER_BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from t3probe.clock import Clock
from t3probe.config import (
    RESOLVER_KINDS,
    AnyLegConfig,
    DohResolverConfig,
    PinnedResolverConfig,
)
from t3probe.legs.budget import LegBudget
from t3probe.resolvers.base import (
    DnsFailureSink,
    Resolver,
    ServerStateSink,
    ignore_server_state,
)
from t3probe.resolvers.pinned import PinnedResolver
from t3probe.resolvers.system import SystemResolver

ResolverBuilder = Callable[[Any, LegBudget, DnsFailureSink, Clock, ServerStateSink], Resolver]


def _system(
    config: Any, budget: LegBudget, on_failure: DnsFailureSink, clock: Clock, _: ServerStateSink
) -> Resolver:
    return SystemResolver(on_failure, timeout=budget.dns)


def _pinned(
    config: Any, budget: LegBudget, on_failure: DnsFailureSink, clock: Clock, _: ServerStateSink
) -> Resolver:
    assert isinstance(config, PinnedResolverConfig)
    return PinnedResolver(str(config.address))


def _doh(
    config: Any,
    budget: LegBudget,
    on_failure: DnsFailureSink,
    clock: Clock,
    on_server_state: ServerStateSink,
) -> Resolver:
    # Imported here: only DoH legs pay for dnspython and httpcore2 at start-up.
    from t3probe.resolvers.doh import DohResolver

    assert isinstance(config, DohResolverConfig)
    return DohResolver.from_config(
        config, on_failure=on_failure, clock=clock, on_server_state=on_server_state
    )


RESOLVER_BUILDERS: dict[str, ResolverBuilder] = {
    "system": _system,
    "pinned": _pinned,
    "doh": _doh,
}

_unpaired = set(RESOLVER_KINDS) ^ set(RESOLVER_BUILDERS)
if _unpaired:
    raise ImportError(f"resolver kinds without both a config class and a builder: {_unpaired}")


def build_resolver(
    leg: AnyLegConfig,
    budget: LegBudget,
    on_failure: DnsFailureSink,
    clock: Clock,
    on_server_state: ServerStateSink = ignore_server_state,
) -> Resolver:
    kind = leg.resolver.kind
    try:
        builder = RESOLVER_BUILDERS[kind]
    except KeyError as err:
        known = ", ".join(RESOLVER_BUILDERS)
        raise LookupError(
            f"leg {leg.name}: unknown resolver kind {kind!r} (known: {known})"
        ) from err
    return builder(leg.resolver, budget, on_failure, clock, on_server_state)
