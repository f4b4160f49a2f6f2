"""``t3probe echo``'s options, as an operator meets them: help, errors, a real process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from t3probe.echo import EchoLimits
from tests.support.env import TIME_UNIT
from tests.support.frames import upgrade_request
from tests.support.harness import free_port


def _echo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "t3probe", "echo", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_names_every_cap_and_its_real_default() -> None:
    result = _echo("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    defaults = EchoLimits()
    for option, default in [
        ("--max-connections", f"(default: {defaults.max_connections})"),
        ("--max-connections-per-client", f"(default: {defaults.max_connections_per_client})"),
        ("--reserved-connections", "(default: a tenth of --max-connections)"),
        ("--reserve-max-per-client", f"(default: {defaults.reserve_max_per_client})"),
        ("--max-pending-connections", "(default: --max-connections)"),
        ("--trusted-proxy", "default none"),
    ]:
        assert option in text
        assert default in text, (option, default)
    assert defaults.reserve == defaults.max_connections // 10
    assert defaults.pending_cap == defaults.max_connections
    assert defaults.trusted_proxies == ()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-connections-per-client", "0"], "--max-connections-per-client"),
        (["--max-connections", "10", "--reserved-connections", "10"], "--reserved-connections"),
        (["--max-pending-connections", "-1"], "--max-pending-connections"),
        (["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "proxy.example"], "--trusted-proxy"),
    ],
)
def test_a_bad_option_exits_2_naming_it(args: list[str], named: str) -> None:
    result = _echo("--listen", f"127.0.0.1:{free_port()}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "EchoLimits" not in result.stderr


async def test_the_options_reach_the_running_echo() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "echo", "--listen", f"127.0.0.1:{port}",
        "--max-connections-per-client", "1", "--trusted-proxy", "127.0.0.2/32",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    writers = []

    async def status(source: str, forwarded_for: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writers.append(writer)
        request = upgrade_request(port)
        writer.write(request[:-2] + f"X-Forwarded-For: {forwarded_for}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        return head.split(b" ", 2)[1]

    try:
        async with asyncio.timeout(10 * TIME_UNIT):
            line = b""
            while b"echo serving" not in line:
                line = await process.stderr.readline()
        assert b"1 per client address, 100 reserved; trusted proxies: 127.0.0.2/32" in line
        assert await status("127.0.0.1", "203.0.113.1") == b"101"
        assert await status("127.0.0.1", "203.0.113.2") == b"429"  # not trusted: one client
        assert await status("127.0.0.2", "203.0.113.1") == b"101"  # trusted: its own quota
    finally:
        for writer in writers:
            writer.close()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
    assert process.returncode == 0
    text = stderr.decode()
    assert "Traceback" not in text
    # An X-Forwarded-For from an untrusted peer is worth one warning, not one per request.
    assert text.count("X-Forwarded-For from 127.0.0.1 ignored") == 1
