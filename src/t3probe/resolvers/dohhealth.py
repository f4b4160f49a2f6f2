"""Which DoH servers a lookup asks, in which order. Pure: the clock is passed in.

Servers are asked in config order, but one that just failed sits out a back-off (doubling
with each failure in a row, capped), so a dead first server costs its timeout once per
back-off instead of at every refresh. When every server is sitting out, the one whose
back-off ends first is asked anyway: a lookup never fails without asking anybody, and the
first server to come back is found at the pace of lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from t3probe.resolvers.base import ServerStateSink

MAX_BACKOFF_FACTOR = 8


@dataclass
class ServerStatus:
    server: str
    up: bool = True
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    # What the last successful exchange spoke ("HTTP/2", "HTTP/1.1").
    http_version: str = ""


class ServerHealth:
    def __init__(
        self,
        servers: Sequence[str],
        *,
        backoff_seconds: float,
        on_change: ServerStateSink | None = None,
    ) -> None:
        # A server listed twice is one server: asked once, with one state.
        self._status = {server: ServerStatus(server) for server in servers}
        self._backoff = backoff_seconds
        self._on_change = on_change

    def order(self, now: float) -> list[str]:
        """The servers to ask now, in the order to ask them."""
        statuses = list(self._status.values())
        ready = [status.server for status in statuses if status.retry_at <= now]
        if ready:
            return ready
        return [min(statuses, key=lambda status: status.retry_at).server]

    def failed(self, server: str, now: float, error: str) -> None:
        status = self._status[server]
        status.failures += 1
        status.up = False
        status.last_error = error
        factor = min(2 ** (status.failures - 1), MAX_BACKOFF_FACTOR)
        status.retry_at = now + self._backoff * factor
        self._notify(status)

    def answered(self, server: str, http_version: str) -> None:
        status = self._status[server]
        status.failures = 0
        status.up = True
        status.retry_at = 0.0
        if http_version:
            status.http_version = http_version
        self._notify(status)

    @property
    def count(self) -> int:
        return len(self._status)

    def snapshot(self) -> tuple[ServerStatus, ...]:
        return tuple(ServerStatus(**vars(status)) for status in self._status.values())

    def _notify(self, status: ServerStatus) -> None:
        if self._on_change is not None:
            self._on_change(status.server, status.up)
