"""The aiohttp floor of issue #18: what any WebSocket probe must do, and nothing more.

``python -m benchmarks.floorclient URL LEGS [--heartbeat S]`` opens LEGS WebSockets with
``ws_connect`` on one ``ClientSession``; each sends a text message every heartbeat,
awaits its echo, checks it and observes the round trip in one prometheus_client
Histogram. No reconnects, no verdict, no events: the cost below which no probe written
on aiohttp can go, for :mod:`benchmarks.floor` to compare t3probe against.

It talks to its parent by lines. On stdout: ``{"up": N}`` once every connection is open
(or ``{"error": ...}`` and exit 1). On stdin: ``count`` is answered with
``{"echoes": E, "drops": D, "connections": C}``; end of input stops it. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Histogram

from t3probe import netguard

# At most this many handshakes in flight: the echo's pending-connection cap is sized
# for the legs, but a bounded dial keeps the ramp the same at any N.
DIAL_CONCURRENCY = 50


@dataclass
class Tally:
    echoes: int = 0
    drops: int = 0
    connections: int = 0


def _loopback_url(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise argparse.ArgumentTypeError(
            f"URL {url!r}: the floor client only dials loopback (127.0.0.0/8, ::1)"
        )
    return url


async def _leg(
    ws: aiohttp.ClientWebSocketResponse, heartbeat: float, rtt: Histogram, tally: Tally
) -> None:
    loop = asyncio.get_running_loop()
    # Legs start at random phases, as a probe's would, not all in the same tick.
    await asyncio.sleep(random.uniform(0, heartbeat))
    sequence = 0
    try:
        while True:
            sequence += 1
            payload = f"t3probe {sequence}"
            sent = loop.time()
            await ws.send_str(payload)
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT or message.data != payload:
                tally.drops += 1
                return
            now = loop.time()
            rtt.observe(now - sent)
            tally.echoes += 1
            await asyncio.sleep(max(0.0, sent + heartbeat - now))
    except (aiohttp.ClientError, ConnectionError):
        tally.drops += 1
    finally:
        tally.connections -= 1
        await ws.close()


async def _answer(tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            answer = {"echoes": tally.echoes, "drops": tally.drops}
            print(json.dumps({**answer, "connections": tally.connections}), flush=True)


async def run(url: str, legs: int, heartbeat: float) -> int:
    registry = CollectorRegistry()
    rtt = Histogram("floor_rtt_seconds", "Round trip of one echo", registry=registry)
    tally = Tally()
    dials = asyncio.Semaphore(DIAL_CONCURRENCY)
    # limit=0: the connector's default of 100 connections would queue the other legs.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def dial() -> aiohttp.ClientWebSocketResponse:
            async with dials:
                return await session.ws_connect(url, autoping=True)

        try:
            sockets = await asyncio.gather(*(dial() for _ in range(legs)))
        except (aiohttp.ClientError, OSError) as exc:
            print(json.dumps({"error": f"ws_connect failed: {exc!r}"}), flush=True)
            return 1
        tally.connections = len(sockets)
        tasks = [asyncio.create_task(_leg(ws, heartbeat, rtt, tally)) for ws in sockets]
        print(json.dumps({"up": len(sockets)}), flush=True)
        try:
            await _answer(tally)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floorclient", description=__doc__)
    parser.add_argument("url", type=_loopback_url, help="ws:// URL of a loopback echo")
    parser.add_argument("legs", type=int, help="WebSockets to open")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds (default 1)")
    args = parser.parse_args(argv)
    if args.legs < 1 or args.heartbeat <= 0:
        parser.error("legs must be at least 1 and --heartbeat above 0")
    netguard.install()
    return asyncio.run(run(args.url, args.legs, args.heartbeat))


if __name__ == "__main__":
    sys.exit(main())
