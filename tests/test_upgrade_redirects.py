"""A redirect in answer to the WebSocket upgrade is refused, never followed.

Following it would measure another route (a wss:// leg redirected to a plaintext echo
elsewhere once came up healthy): the leg fails ``handshake_rejected`` instead.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from t3probe.reasons import Reason
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, leg, probe_config, running_probe


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
