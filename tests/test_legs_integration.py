"""Each drop reason produced by the real fault it names, against real loopback peers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets.asyncio.server as ws_server

from t3probe.config import ProbeConfig
from t3probe.lab.backend import BackendServer
from t3probe.lab.dohserver import DohServer
from t3probe.lab.faultproxy import FaultProxy
from t3probe.lab.pki import Pki
from t3probe.reasons import Reason
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, eventually, leg, probe_config, running_probe


async def test_legs_come_up_and_measure_rtt(peer: Peer) -> None:
    config = probe_config(
        [
            # A name, not an IP literal: aiohttp skips the resolver for literals.
            leg("ws", f"ws://localhost:{peer.port}/probe/ws"),
            leg("http", f"http://127.0.0.1:{peer.port}/ok", kind="http"),
        ]
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await probe.wait_for("http", "up")
        await asyncio.sleep(0.5 * TIME_UNIT)
        assert probe.metric("t3probe_connected", leg="ws") == 1
        assert (probe.metric("t3probe_rtt_seconds_count", leg="ws") or 0) >= 2
        assert (probe.metric("t3probe_rtt_seconds_count", leg="http") or 0) >= 2
        phases = {
            phase: probe.metric("t3probe_connect_duration_seconds_count", leg="ws", phase=phase)
            for phase in ("dns", "tcp", "tls", "upgrade")
        }
        # A plain ws:// leg has no TLS phase to time, and so no series for one.
        assert phases == {"dns": 1, "tcp": 1, "tls": None, "upgrade": 1}, phases
        assert probe.probe.recorder.verdict.verdict == "infra_clean"


async def test_websockets_library_echo_is_a_valid_peer() -> None:
    async def echo(connection: ws_server.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with ws_server.serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = probe_config([leg("indep", f"ws://127.0.0.1:{port}/")])
        async with running_probe(config) as probe:
            await probe.wait_for("indep", "up")
            await asyncio.sleep(0.5 * TIME_UNIT)
            assert not [e for e in probe.events if e.kind == "down"]
            assert (probe.metric("t3probe_rtt_seconds_count", leg="indep") or 0) >= 2


async def test_fin_without_a_close_frame_is_not_a_reset(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/fin")], heartbeat_seconds=5, watchdog_seconds=10
    )
    async with running_probe(config) as probe:
        up = await probe.wait_for("ws", "up")
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.CLOSED_WITHOUT_FRAME, down.detail
        assert "FIN" in down.detail
        assert down.at - up.at < 0.5 * TIME_UNIT


async def test_rst_is_reset_within_a_fraction_of_a_second(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/rst")], heartbeat_seconds=5, watchdog_seconds=10
    )
    async with running_probe(config) as probe:
        up = await probe.wait_for("ws", "up")
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.RESET
        # The heartbeat is 5 s: only a reader always awaiting the socket sees this at once.
        assert down.at - up.at < 0.5 * TIME_UNIT


async def test_close_frame_is_closed_by_peer_with_its_code(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/close/4011")])
    async with running_probe(config) as probe:
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.CLOSED_BY_PEER
        assert down.close_code == 4011
        assert down.to_json()["close_code"] == 4011


async def test_a_close_right_after_upgrade_keeps_its_code_and_backs_off(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/close-now/1008")],
        backoff_initial_seconds=0.1,
        backoff_max_seconds=1.0,
    )
    async with running_probe(config) as probe:
        await asyncio.sleep(2.0)
    downs = [e for e in probe.events if e.kind == "down"]
    assert downs, "the peer's close was never seen"
    assert all(e.reason is Reason.CLOSED_BY_PEER and e.close_code == 1008 for e in downs), [
        (e.reason, e.close_code, e.detail) for e in downs
    ]
    # 0.1, 0.2, 0.4, 0.8 s...: a handful of attempts, not one every 0.1 s.
    assert len(downs) <= 8


async def test_refused_is_connect_refused(peer: Peer) -> None:
    port = peer.port
    await peer.stop()
    config = probe_config([leg("ws", f"ws://127.0.0.1:{port}/probe/ws")])
    async with running_probe(config) as probe:
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.CONNECT_REFUSED
        assert probe.metric("t3probe_disconnects_total", leg="ws", reason="connect_refused") == 1


async def test_silent_peer_is_rtt_timeout_just_after_the_watchdog(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/silent")])
    async with running_probe(config) as probe:
        up = await probe.wait_for("ws", "up")
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.RTT_TIMEOUT
        watchdog = config.watchdog_seconds
        assert watchdog <= down.at - up.at + 0.01 < watchdog + 0.3 * TIME_UNIT


async def test_503_on_upgrade_is_handshake_rejected(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/reject")])
    async with running_probe(config) as probe:
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.HANDSHAKE_REJECTED
        assert "503" in down.detail


def pinned_tls_leg(name: str, port: int, pki: Pki) -> dict[str, Any]:
    """A wss leg for the lab's name, pinned to 127.0.0.1, trusting only the test CA."""
    return leg(
        name,
        f"wss://t3.lab.test:{port}/probe/ws",
        resolver={"kind": "pinned", "address": "127.0.0.1"},
        ca_file=str(pki.ca_cert),
    )


async def test_certificate_for_another_name_is_tls_error(pki: Pki, tmp_path: Path) -> None:
    wrong = pki.issue("wrong", ["elsewhere.lab.test"], [])
    server = await Peer().start(ssl_context=wrong.server_context())
    try:
        config = probe_config([pinned_tls_leg("tls", server.port, pki)])
        async with running_probe(config) as probe:
            down = await probe.wait_for("tls", "down")
            assert down.reason is Reason.TLS_ERROR
    finally:
        await server.stop()


async def test_pinned_resolver_keeps_sni_and_host_of_the_url(pki: Pki) -> None:
    seen: dict[str, str | None] = {}
    server_context = pki.server_context()

    def remember_sni(sock: object, name: str | None, context: object) -> None:
        seen["sni"] = name

    server_context.sni_callback = remember_sni

    async def echo(connection: ws_server.ServerConnection) -> None:
        seen["host"] = connection.request.headers["Host"] if connection.request else None
        async for message in connection:
            await connection.send(message)

    async with ws_server.serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = probe_config([pinned_tls_leg("pinned", port, pki)])
        async with running_probe(config) as probe:
            await probe.wait_for("pinned", "up")
    assert seen == {"sni": "t3.lab.test", "host": f"t3.lab.test:{port}"}


async def test_http_leg_status_outside_expected_set_is_http_error(peer: Peer) -> None:
    config = probe_config(
        [
            leg("backend", f"http://127.0.0.1:{peer.port}/status/502", kind="http"),
            leg(
                "strict",
                f"http://127.0.0.1:{peer.port}/status/404",
                kind="http",
                expected_status=[200],
            ),
            leg("lenient", f"http://127.0.0.1:{peer.port}/status/404", kind="http"),
        ]
    )
    async with running_probe(config) as probe:
        assert (await probe.wait_for("backend", "down")).reason is Reason.HTTP_ERROR
        assert (await probe.wait_for("strict", "down")).reason is Reason.HTTP_ERROR
        await probe.wait_for("lenient", "up")


async def test_stalled_http_backend_is_rtt_timeout(peer: Peer) -> None:
    config = probe_config([leg("backend", f"http://127.0.0.1:{peer.port}/stall", kind="http")])
    async with running_probe(config) as probe:
        started = time.monotonic()
        down = await probe.wait_for("backend", "down")
        assert down.reason is Reason.RTT_TIMEOUT
        assert time.monotonic() - started >= config.watchdog_seconds


async def test_require_header_missing_is_route_mismatch(peer: Peer) -> None:
    config = probe_config(
        [
            leg("cdn", f"ws://127.0.0.1:{peer.port}/probe/ws", require_header="cf-ray"),
        ]
    )
    async with running_probe(config) as probe:
        down = await probe.wait_for("cdn", "down")
        assert down.reason is Reason.ROUTE_MISMATCH
        assert probe.probe.recorder.verdict.verdict == "unknown"


async def test_forbidden_address_is_route_mismatch(peer: Peer) -> None:
    config = probe_config(
        [
            leg(
                "cdn",
                f"ws://localhost:{peer.port}/probe/ws",
                forbid_addresses=["127.0.0.0/8", "::1/128"],
            )
        ]
    )
    async with running_probe(config) as probe:
        down = await probe.wait_for("cdn", "down")
        assert down.reason is Reason.ROUTE_MISMATCH
        assert probe.metric("t3probe_dns_failures_total", leg="cdn", reason="forbidden_address")


async def test_a_hung_system_resolver_is_dns_failed_not_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def hang(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3)
        raise socket.gaierror(socket.EAI_AGAIN, "gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    config = probe_config(
        [leg("named", "ws://backend.t3probe.test:9/probe/ws")], connect_timeout_seconds=0.5
    )
    async with running_probe(config) as probe:
        started = time.monotonic()
        down = await probe.wait_for("named", "down")
        assert down.reason is Reason.DNS_FAILED
        assert time.monotonic() - started < 1.5 * TIME_UNIT
        assert probe.metric("t3probe_dns_failures_total", leg="named", reason="timeout")


async def test_every_drop_and_recovery_is_a_json_line(peer: Peer) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/close/4000")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "down")
    objects = [json.loads(line) for line in probe.lines]
    downs = [o for o in objects if o.get("kind") == "down"]
    assert downs and downs[0]["reason"] == "closed_by_peer" and downs[0]["close_code"] == 4000
    assert all(isinstance(o["at"], float) and round(o["at"], 3) == o["at"] for o in objects)


@pytest.fixture
async def proxied_peer(peer: Peer) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 0, "127.0.0.1", peer.port, name="path")
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_proxy_reset_is_reset_at_once(proxied_peer: FaultProxy) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{proxied_peer.port}/probe/ws")],
        heartbeat_seconds=5,
        watchdog_seconds=10,
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        injected = time.time()
        with proxied_peer.reset():
            down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.RESET
        assert down.at - injected < 0.5 * TIME_UNIT


async def test_proxy_blackhole_is_rtt_timeout_just_after_the_watchdog(
    proxied_peer: FaultProxy,
) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{proxied_peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await asyncio.sleep(0.3 * TIME_UNIT)
        with proxied_peer.blackhole():
            injected = time.time()
            down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.RTT_TIMEOUT
        # The watchdog counts from the last echo, which came at most a heartbeat earlier.
        elapsed = down.at - injected
        assert config.watchdog_seconds - config.heartbeat_seconds <= elapsed
        assert elapsed < config.watchdog_seconds + 0.3 * TIME_UNIT
        assert down.age_seconds is not None and down.age_seconds > 0


async def test_proxy_refuse_is_connect_refused_once_down(proxied_peer: FaultProxy) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{proxied_peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        with proxied_peer.refuse():
            first = await probe.wait_for("ws", "down")
            # Still the same outage: a failed reconnect, not another drop.
            refused = await probe.wait_for(
                "ws", "reconnect_failed", after=probe.events.index(first) + 1
            )
        assert first.reason is Reason.RESET
        assert refused.reason is Reason.CONNECT_REFUSED
        up = await probe.wait_for("ws", "up", after=probe.events.index(refused) + 1)
        assert up.at > refused.at


@pytest.fixture
async def doh(pki: Pki) -> AsyncIterator[DohServer]:
    server = DohServer({"t3.lab.test": ["127.0.0.1"]}, ttl=1)
    await server.start("127.0.0.1", 0, pki.server_context())
    yield server
    await server.stop()


def doh_leg_config(doh: DohServer, pki: Pki, peer: Peer) -> ProbeConfig:
    resolver = {"kind": "doh", "servers": [doh.url], "ca_file": str(pki.ca_cert),
                "timeout_seconds": 0.2, "min_ttl_seconds": 0.1}  # fmt: skip
    return probe_config([leg("cdn", f"ws://t3.lab.test:{peer.port}/probe/ws", resolver=resolver)])


async def test_doh_outage_is_dns_failed_never_connect(pki: Pki, peer: Peer, doh: DohServer) -> None:
    with doh.down():
        async with running_probe(doh_leg_config(doh, pki, peer)) as probe:
            down = await probe.wait_for("cdn", "down")
            assert down.reason is Reason.DNS_FAILED
            assert probe.metric("t3probe_dns_failures_total", leg="cdn", reason="timeout")
            assert probe.probe.recorder.refresh_verdict().verdict == "unknown"


async def test_stale_dns_answer_keeps_the_leg_measuring(
    pki: Pki, peer: Peer, doh: DohServer
) -> None:
    async with running_probe(doh_leg_config(doh, pki, peer)) as probe:
        await probe.wait_for("cdn", "up")
        with doh.down():
            await asyncio.sleep(1.2)  # the answer's TTL runs out
            for ws in peer.sockets:
                await ws.close(code=1012)
            first_down = await probe.wait_for("cdn", "down")
            up = await probe.wait_for("cdn", "up", after=probe.events.index(first_down) + 1)
        assert up.detail == "dns answer served stale"
        assert probe.metric("t3probe_dns_failures_total", leg="cdn", reason="timeout")


async def test_an_http_leg_fails_a_watchdog_after_its_last_answer_not_after_its_next_get(
    backend: BackendServer,
) -> None:
    # A heartbeat close to the watchdog: waiting for the next GET would add most of it.
    url = f"http://127.0.0.1:{backend.port}/api/auth/session"
    config = probe_config(
        [leg("backend", url, kind="http")],
        heartbeat_seconds=1.0 * TIME_UNIT,
        watchdog_seconds=1.2 * TIME_UNIT,
    )
    async with running_probe(config) as probe:
        await probe.wait_for("backend", "up")
        answered = probe.metric("t3probe_rtt_seconds_count", leg="backend") or 0
        await eventually(
            lambda: (probe.metric("t3probe_rtt_seconds_count", leg="backend") or 0) > answered,
            within=3 * TIME_UNIT,
        )
        last_answer = time.monotonic()
        with backend.stall():
            down = await probe.wait_for("backend", "down")
            waited = time.monotonic() - last_answer
    assert down.reason is Reason.RTT_TIMEOUT
    # Convicted one watchdog after the last answer (the old bound was watchdog + heartbeat).
    assert waited < config.watchdog_seconds + 0.5 * config.heartbeat_seconds, waited
