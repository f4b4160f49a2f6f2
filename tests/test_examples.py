"""The shipped loopback example, run the way its header comment says."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.support.env import TIME_UNIT
from tests.support.harness import free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "loopback.yaml"


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode


async def test_loopback_example_brings_every_leg_up(tmp_path: Path) -> None:
    echo_port, probe_port = free_port(), free_port()
    config = tmp_path / "loopback.yaml"
    config.write_text(EXAMPLE.read_text().replace("8765", str(echo_port)))
    env = {**os.environ, "T3PROBE_LOOPBACK_ONLY": "1", "T3PROBE_LISTEN": f"127.0.0.1:{probe_port}"}
    echo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "echo", "--listen", f"127.0.0.1:{echo_port}",
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        wanted = {f't3probe_connected{{leg="{leg}"}} 1.0' for leg in ("direct", "pinned", "health")}
        async with asyncio.timeout(20 * TIME_UNIT), aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(0.3)
                try:
                    async with session.get(f"http://127.0.0.1:{probe_port}/metrics") as response:
                        metrics = await response.text()
                except aiohttp.ClientConnectionError:
                    continue
                if wanted <= set(metrics.splitlines()):
                    break
    finally:
        assert await _stop(probe) == 0
        assert await _stop(echo) == 0
