"""Event lines to stdout from a thread, so a slow or vanished reader never blocks the probe.

A container runtime normally drains stdout, but a full pipe (a stuck log shipper) or a
closed one (``t3probe run | head``) must not freeze the event loop or fail a leg.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TextIO

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 10_000


class LineWriter:
    def __init__(self, stream: TextIO, capacity: int = DEFAULT_CAPACITY) -> None:
        self._stream = stream
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._broken = False
        self.dropped = 0

    def __call__(self, line: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="event-lines", daemon=True)
            self._thread.start()
        if self._broken:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            if self.dropped == 0:
                log.warning("stdout is not being read: dropping event lines (see /events)")
            self.dropped += 1

    def _drain(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError) as err:
                self._broken = True
                log.warning("stdout closed (%s): event lines now only on /events", err)
                return

    def close(self, timeout: float = 1.0) -> None:
        """Flush what is queued, waiting at most ``timeout`` for a slow reader."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
