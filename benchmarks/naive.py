"""The baseline: a naive sequential probe loop, the common way such probes are written.

Send a heartbeat, wait for its echo (or the HTTP answer) with a timeout, sleep until the
next heartbeat, repeat; reconnect at the next heartbeat after a failure. Nothing reads
the socket while the loop sleeps, so a reset or a close frame is only noticed when the
loop next touches the connection. It is deliberately written the straightforward way,
with the same heartbeat and timeout as t3probe, so the comparison is about the design
and not about tuning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

NAIVE_EXCEPTIONS = (aiohttp.ClientError, OSError, TimeoutError, RuntimeError)


class NaiveDrop(Exception):
    """The echo did not come back as sent."""


@dataclass
class NaiveStats:
    """What the loop observed, for the benchmark to read."""

    on_up: Callable[[float], None] | None = None
    on_down: Callable[[float, str], None] | None = None
    rtts: list[float] = field(default_factory=list)
    drops: int = 0
    is_up: bool = False

    def up(self) -> None:
        self.is_up = True
        if self.on_up is not None:
            self.on_up(time.monotonic())

    def down(self, reason: str) -> None:
        self.drops += 1
        self.is_up = False
        if self.on_down is not None:
            self.on_down(time.monotonic(), reason)


async def naive_websocket_loop(
    url: str, heartbeat: float, echo_timeout: float, stats: NaiveStats
) -> None:
    """Runs until cancelled."""
    async with aiohttp.ClientSession() as session:
        sequence = 0
        while True:
            ws: aiohttp.ClientWebSocketResponse | None = None
            try:
                async with asyncio.timeout(echo_timeout):
                    ws = await session.ws_connect(url, autoping=True)
                stats.up()
                while True:
                    sequence += 1
                    text = f"naive {sequence}"
                    sent = time.perf_counter()
                    await ws.send_str(text)
                    message = await ws.receive(timeout=echo_timeout)
                    if message.type is not aiohttp.WSMsgType.TEXT or message.data != text:
                        raise NaiveDrop(f"{message.type.name} instead of the echo")
                    stats.rtts.append(time.perf_counter() - sent)
                    await asyncio.sleep(heartbeat)
            except (*NAIVE_EXCEPTIONS, NaiveDrop) as err:
                # Noted before the cleanup below, which may wait out a dead path.
                stats.down(type(err).__name__)
            finally:
                if ws is not None:
                    with contextlib.suppress(*NAIVE_EXCEPTIONS):
                        async with asyncio.timeout(echo_timeout):
                            await ws.close()
            await asyncio.sleep(heartbeat)


async def naive_http_loop(
    url: str, heartbeat: float, echo_timeout: float, stats: NaiveStats
) -> None:
    """GET, check the status, sleep; a kept-alive session, as t3probe's HTTP leg has."""
    was_up = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=echo_timeout)) as session:
        while True:
            try:
                sent = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status >= 500:
                        raise NaiveDrop(f"status {response.status}")
                stats.rtts.append(time.perf_counter() - sent)
                if not was_up:
                    was_up = True
                    stats.up()
            except (*NAIVE_EXCEPTIONS, NaiveDrop) as err:
                was_up = False
                stats.down(type(err).__name__)
            await asyncio.sleep(heartbeat)
