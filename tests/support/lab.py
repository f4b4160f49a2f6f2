"""Running ``t3probe lab`` as a child process and reading what it prints."""

from __future__ import annotations

import asyncio
import os

from tests.support.env import TIME_UNIT

LAB_ENV = {**os.environ, "T3PROBE_LOOPBACK_ONLY": "1"}


async def read_until(stream: asyncio.StreamReader, needle: str, seconds: float) -> list[str]:
    """The lines up to and including the first one containing ``needle``."""
    seen: list[str] = []
    async with asyncio.timeout(seconds * TIME_UNIT):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"lab exited before printing {needle!r}: {seen}")
            seen.append(line.rstrip())
            if needle in line:
                return seen
