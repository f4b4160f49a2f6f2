"""Heartbeat bookkeeping of a WebSocket leg, pure: sequence numbers, echoes, the watchdog.

The leg does the I/O and asks this object what to send, what an incoming text means,
and when the watchdog expires, so every rule here is testable without a socket.
"""

from __future__ import annotations

PAYLOAD_PREFIX = "t3probe "
_MAX_SEQUENCE_DIGITS = 20


class Heartbeats:
    def __init__(self, heartbeat_seconds: float, watchdog_seconds: float) -> None:
        self.watchdog_seconds = watchdog_seconds
        # Only heartbeats still awaiting their echo: no more can be useful than fit in a
        # watchdog, so the map stays bounded whatever the peer does.
        self._limit = int(watchdog_seconds / heartbeat_seconds) + 2
        self._outstanding: dict[int, float] = {}
        # Kept across sessions, so a late echo from an old connection never matches.
        self._sequence = 0
        self.last_answer = 0.0
        # Heartbeats overtaken by a newer echo since the last take_lost(): never answered.
        self._lost = 0

    def start(self, now: float) -> None:
        """A new connection: nothing outstanding, the watchdog counts from now."""
        self._outstanding.clear()
        self.last_answer = now

    def next_ping(self, now: float) -> str:
        self._sequence += 1
        self._outstanding[self._sequence] = now
        while len(self._outstanding) > self._limit:
            del self._outstanding[min(self._outstanding)]
        return f"{PAYLOAD_PREFIX}{self._sequence}"

    def on_text(self, text: str, now: float) -> float | None:
        """The round trip if ``text`` echoes an outstanding heartbeat, else None."""
        if not text.startswith(PAYLOAD_PREFIX):
            return None
        digits = text[len(PAYLOAD_PREFIX) : len(PAYLOAD_PREFIX) + _MAX_SEQUENCE_DIGITS]
        try:
            sequence = int(digits)
        except ValueError:
            return None
        sent = self._outstanding.pop(sequence, None)
        if sent is None:
            return None
        self.last_answer = now
        # Older heartbeats overtaken by this echo will never be answered meaningfully.
        for stale in [seq for seq in self._outstanding if seq < sequence]:
            del self._outstanding[stale]
            self._lost += 1
        return now - sent

    def take_lost(self) -> int:
        """How many heartbeats were overtaken (lost) since the last call."""
        lost, self._lost = self._lost, 0
        return lost

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def deadline(self) -> float:
        return self.last_answer + self.watchdog_seconds
