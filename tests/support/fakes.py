"""Stand-ins for the clock and the DNS failure sink, for resolver tests."""

from __future__ import annotations

from collections.abc import Callable

from t3probe.resolvers.doh import DohResolver

# What the ``make_resolver`` fixture (tests/conftest.py) yields: servers and overrides of
# its defaults in, a resolver that is closed when the test ends out.
MakeResolver = Callable[..., DohResolver]


class FakeClock:
    """Cache ages are asserted exactly, so the resolver's clock is moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sink:
    """Records every DNS failure reason, and every server state change, in order."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.states: list[tuple[str, bool]] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)

    def server_state(self, server: str, up: bool) -> None:
        self.states.append((server, up))
