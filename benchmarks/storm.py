"""Concurrent HTTP clients in a process of their own, so their work is not the probe's.

``python -m benchmarks.storm URL --clients N --seconds S [--pages]`` runs N clients that
GET ``URL`` back to back for S seconds; with ``--pages`` each round pages through a
probe's whole ``/events`` buffer by ``after_id``. Prints one JSON object: answers by
status, request latencies, bytes and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.common import summary
from t3probe import netguard

_ID = b'{"id":'
_MORE = b'"more":true}'


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors: Counter[str] = Counter()
        self.rounds = 0

    def result(self) -> dict[str, Any]:
        return {
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "requests": sum(self.statuses.values()),
            "latency_seconds": summary(self.latencies),
            "bytes": self.bytes,
            "errors": dict(self.errors),
            "rounds": self.rounds,
        }


async def _get(session: aiohttp.ClientSession, url: str, tally: Tally, **params: str) -> bytes:
    started = time.monotonic()
    async with session.get(url, params=params) as response:
        body = await response.read()
        tally.statuses[response.status] += 1
    tally.latencies.append(time.monotonic() - started)
    tally.bytes += len(body)
    return body if response.status == 200 else b""


def _last_id(body: bytes) -> int | None:
    """The last event's id, without parsing megabytes of JSON for one number."""
    at = body.rfind(_ID)
    if at < 0:
        return None
    digits = body[at + len(_ID) : body.index(b",", at)]
    return int(digits)


async def _client(
    session: aiohttp.ClientSession, url: str, pages: bool, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        try:
            if not pages:
                await _get(session, url, tally)
            else:
                after = 0
                while time.monotonic() < deadline:
                    body = await _get(session, url, tally, after_id=str(after))
                    last = _last_id(body)
                    if last is None or not body.rstrip().endswith(_MORE):
                        break
                    after = last
            tally.rounds += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            tally.errors[type(err).__name__] += 1
            await asyncio.sleep(0.05)


async def storm(url: str, clients: int, seconds: float, pages: bool) -> dict[str, Any]:
    tally = Tally()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(
            *(_client(session, url, pages, deadline, tally) for _ in range(clients))
        )
    return tally.result()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storm")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--pages", action="store_true", help="page through /events by after_id")
    args = parser.parse_args(argv)
    netguard.install()  # loopback only, like every other benchmark process
    result = asyncio.run(storm(args.url, args.clients, args.seconds, args.pages))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
