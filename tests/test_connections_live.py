"""Legs of several connections against a real echo: a share of them reset is a partial
fault, convicted with its blast radius and summed up as one burst."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.env import TIME_UNIT
from tests.support.harness import (
    eventually,
    leg,
    probe_config,
    rst,
    running_probe,
    serve_app,
)


class SharedEcho:
    """One echo behind both legs, as the LB is: it can reset every other connection."""

    def __init__(self) -> None:
        self.transports: list[asyncio.Transport] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        # Turn new upgrades away (as a dead LB backend would): the connections that
        # exist keep working.
        self.refuse_new = False

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_new:
            return web.Response(status=503, text="no backend")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        self.transports.append(request.transport)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    def open(self) -> list[asyncio.Transport]:
        return [t for t in self.transports if not t.is_closing()]

    def reset_every_other(self) -> int:
        victims = self.open()[::2]
        for transport in victims:
            rst(transport)
        return len(victims)

    async def start(self) -> SharedEcho:
        app = web.Application()
        app.router.add_get("/probe/ws", self._echo)
        self.runner, self.port = await serve_app(app)
        return self


@pytest.fixture
async def shared_echo() -> AsyncIterator[SharedEcho]:
    echo = await SharedEcho().start()
    yield echo
    assert echo.runner is not None
    await echo.runner.cleanup()


async def test_half_the_connections_reset_is_a_partial_fault_with_its_blast_radius(
    shared_echo: SharedEcho,
) -> None:
    url = f"ws://127.0.0.1:{shared_echo.port}/probe/ws"
    config = probe_config(
        [
            {**leg("cdn", url, connections=4), "segments": ["edge", "lb"]},
            {**leg("internal", url, connections=4), "segments": ["lb"]},
        ],
        attribution_window_seconds=3.0 * TIME_UNIT,
        burst_window_seconds=0.5 * TIME_UNIT,
    )
    async with running_probe(config) as probe:
        recorder = probe.probe.recorder
        await eventually(lambda: recorder.verdict.verdict == "infra_clean", 5 * TIME_UNIT)
        assert probe.metric("t3probe_leg_connections", leg="cdn") == 4
        assert probe.metric("t3probe_leg_connections_up", leg="cdn") == 4
        ups = [e for e in probe.events if e.kind == "up"]
        assert sorted((e.leg, e.connection) for e in ups) == sorted(
            (name, index) for name in ("cdn", "internal") for index in range(4)
        )
        assert len(shared_echo.open()) == 8
        before = len(probe.events)

        assert shared_echo.reset_every_other() == 4
        await eventually(
            lambda: sum(1 for e in probe.events[before:] if e.kind == "down") == 4, 5 * TIME_UNIT
        )
        downs = [e for e in probe.events[before:] if e.kind == "down"]
        assert all(e.reason == "reset" and e.connection is not None for e in downs)
        assert len({(e.leg, e.connection) for e in downs}) == 4
        verdict = recorder.verdict_json()
        assert verdict["verdict"] == "suspect"
        assert verdict["suspects"] == ["lb"]
        assert verdict["blast_radius"] == {"lb": 0.5}
        # Four drops of single connections: counted per connection, per leg.
        drops = sum(
            probe.metric("t3probe_disconnects_total", leg=name, reason="reset") or 0
            for name in ("cdn", "internal")
        )
        assert drops == 4

        # Every leg that lost two or more connections within the interval says so once.
        dropped = {name: sum(1 for e in downs if e.leg == name) for name in ("cdn", "internal")}
        expected = {name for name, count in dropped.items() if count >= 2}
        assert expected, dropped
        for name in expected:
            burst = await probe.wait_for(name, "burst", after=before)
            assert (burst.dropped, burst.of, burst.reason) == (dropped[name], 4, "reset")
            assert burst.connection is None
            assert burst.interval_seconds is not None
            assert 0 <= burst.interval_seconds < 0.5 * TIME_UNIT

        # The reset connections reconnect on their own: the leg is whole again.
        await eventually(lambda: recorder.verdict_json()["legs"]["cdn"]["state"] == "up", 5)
        await eventually(lambda: len(shared_echo.open()) == 8, 5 * TIME_UNIT)
        assert probe.metric("t3probe_leg_connections_up", leg="internal") == 4


async def test_a_leg_stays_partial_while_some_connections_cannot_come_back(
    shared_echo: SharedEcho,
) -> None:
    url = f"ws://127.0.0.1:{shared_echo.port}/probe/ws"
    config = probe_config([leg("pair", url, connections=2)])
    async with running_probe(config) as probe:
        await eventually(
            lambda: probe.metric("t3probe_leg_connections_up", leg="pair") == 2, 5 * TIME_UNIT
        )
        shared_echo.refuse_new = True
        shared_echo.open()[0].close()  # a FIN without a close frame; its reconnects fail
        await probe.wait_for("pair", "reconnect_failed")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{probe.probe.port}/verdict") as response,
        ):
            body = json.loads(await response.text())
        pair = body["legs"]["pair"]
        assert (pair["state"], pair["up"], pair["status"]) == ("partial", False, "failing")
        assert (pair["connections"], pair["connections_up"], pair["reason"]) == (
            2,
            1,
            "handshake_rejected",
        )
        assert (body["verdict"], body["blast_radius"]) == ("suspect", {"pair_path": 0.5})
        assert probe.metric("t3probe_connected", leg="pair") == 0.5
        shared_echo.refuse_new = False
        await eventually(lambda: probe.metric("t3probe_connected", leg="pair") == 1, 5)


async def test_an_http_leg_of_several_connections_holds_one_tcp_connection_each() -> None:
    # Each connection is its own kept-alive TCP connection (so an LB spreads them as it
    # spreads users), not three GETs sharing one socket.
    peers: list[tuple[str, int]] = []

    async def alive(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/alive", alive)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        config = probe_config([leg("get", f"http://127.0.0.1:{port}/alive", "http", connections=3)])
        async with running_probe(config) as probe:
            await eventually(
                lambda: (
                    probe.metric("t3probe_leg_connections_up", leg="get") == 3 and len(peers) >= 9
                ),
                10 * TIME_UNIT,
            )
            assert probe.probe.recorder.verdict_json()["legs"]["get"]["state"] == "up"
            assert not [event for event in probe.events if event.kind == "down"]
        # Three connections, each kept alive across its heartbeats.
        assert len(set(peers)) == 3, peers
    finally:
        await runner.cleanup()
