"""A request the server cannot parse is logged as one line, without a traceback."""

from __future__ import annotations

import asyncio
import signal
import sys

from tests.support.env import TIME_UNIT
from tests.support.harness import free_port


async def test_an_oversized_request_line_is_one_log_line() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "echo", "--listen", f"127.0.0.1:{port}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(10 * TIME_UNIT):
            while b"echo serving" not in await process.stderr.readline():
                pass
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read(12)).startswith(b"HTTP/1.")
            writer.close()
            await writer.wait_closed()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
    text = stderr.decode()
    assert "Traceback" not in text
    assert text.count("bad request refused (400)") == 3
