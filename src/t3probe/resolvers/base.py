"""The small interface every resolver kind implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from t3probe.reasons import DnsFailure

# Called for every failure, even when a stale answer hides it from the leg.
DnsFailureSink = Callable[[DnsFailure], None]


@dataclass(frozen=True)
class Resolution:
    addresses: tuple[str, ...]
    stale: bool = False


class Resolver(Protocol):
    async def resolve(self, host: str) -> Resolution:
        """Return addresses to try in order; raise ProbeFailure(DNS_FAILED) when none."""
        ...

    async def close(self) -> None: ...
