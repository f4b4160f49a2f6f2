"""Every failure shows with its own reason: nothing hidden by retries, redirects, secrets."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from t3probe.reasons import Reason
from t3probe.redact import REDACTED, redact_text, redact_url
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, leg, probe_config, raw_tcp_server, rst, running_probe

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


@pytest.mark.parametrize("target", ["working", "dead"])
async def test_a_redirected_upgrade_is_rejected_never_followed(peer: Peer, target: str) -> None:
    # The case: wss:// redirected to a plaintext echo elsewhere came up healthy.
    port = peer.port if target == "working" else 9

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{port}/probe/ws?token=s3cret")

    app = web.Application()
    app.router.add_get("/probe/ws", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        config = probe_config([leg("ws", f"ws://127.0.0.1:{site.port}/probe/ws")])
        async with running_probe(config) as probe:
            down = await probe.wait_for("ws", "down")
            await asyncio.sleep(0.3 * TIME_UNIT)
            assert not [e for e in probe.events if e.kind == "up"]
    finally:
        await runner.cleanup()
    assert down.reason is Reason.HANDSHAKE_REJECTED, down.detail
    assert "302" in down.detail and "s3cret" not in down.detail


def test_urls_lose_their_userinfo_and_query_values() -> None:
    url = "wss://user:pa55@t3.example.test:8443/probe/ws?token=abc&x=1#frag"
    redacted = redact_url(url)
    assert "pa55" not in redacted and "abc" not in redacted and "user" not in redacted
    assert (
        redacted == f"wss://{REDACTED}@t3.example.test:8443/probe/ws?token={REDACTED}&x={REDACTED}"
    )
    text = f"Cannot connect to host {url} ssl:default [Connection refused]"
    assert (
        redact_text(text) == f"Cannot connect to host {redacted} ssl:default [Connection refused]"
    )
    assert redact_text("no url here") == "no url here"


async def test_an_outage_is_one_disconnect_and_its_reconnect_failures_are_counted_apart(
    peer: Peer,
) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await peer.stop()  # an echo restart: a close frame, then refused connections
        down = await probe.wait_for("ws", "down")
        refused = await probe.wait_for("ws", "reconnect_failed")
        total = sum(
            probe.metric("t3probe_disconnects_total", leg="ws", reason=reason.value) or 0
            for reason in Reason
        )
        failures = probe.metric(
            "t3probe_reconnect_failures_total", leg="ws", reason="connect_refused"
        )
    assert down.reason is not Reason.CONNECT_REFUSED  # the drop itself: close or RST
    assert refused.reason is Reason.CONNECT_REFUSED
    assert total == 1
    assert failures is not None and failures >= 1
