"""The small interface every resolver kind implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from t3probe.reasons import DnsFailure

# Called for every failure, even when a stale answer hides it from the leg.
DnsFailureSink = Callable[[DnsFailure], None]
# Called with (server, up) by resolvers that ask several servers (DoH) when one of them
# fails or answers again.
ServerStateSink = Callable[[str, bool], None]


def ignore_server_state(server: str, up: bool) -> None:
    return None


@dataclass(frozen=True)
class Resolution:
    addresses: tuple[str, ...]
    stale: bool = False


class Resolver(Protocol):
    async def resolve(self, host: str) -> Resolution:
        """Return addresses to try in order; raise ProbeFailure(DNS_FAILED) when none."""
        ...

    async def close(self) -> None: ...
