"""An HTTP leg's failures each show with their own reason: no silent retry hides one."""

from __future__ import annotations

import asyncio

from t3probe.reasons import Reason
from tests.support.harness import leg, probe_config, raw_tcp_server, rst, running_probe

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


async def test_a_single_rst_into_a_kept_alive_http_connection_is_recorded() -> None:
    requests_per_connection: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests_per_connection.append(0)
        index = len(requests_per_connection) - 1
        while True:
            await reader.readuntil(b"\r\n\r\n")
            requests_per_connection[index] += 1
            # The first connection's second GET meets a RST (a middlebox, a crashed LB).
            if index == 0 and requests_per_connection[index] == 2:
                rst(writer.transport)
                return
            writer.write(OK)
            await writer.drain()

    async with raw_tcp_server(handle) as port:
        config = probe_config([leg("backend", f"http://127.0.0.1:{port}/", kind="http")])
        async with running_probe(config) as probe:
            await probe.wait_for("backend", "up")
            down = await probe.wait_for("backend", "down")
    assert down.reason is Reason.RESET, down.detail
