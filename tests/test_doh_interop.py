"""The DoH resolver and a DoH leg against real DoH servers: dnsdist, unbound, knot-resolver.

Each server runs from Debian's package on 127.0.0.1 with local data only (see
tests/support/dohservers.py), started at most once for this module. unbound and
knot-resolver serve DoH over HTTP/2 only; dnsdist over HTTP/2 and HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from t3probe.lab.pki import Pki
from t3probe.reasons import ProbeFailure, Reason
from t3probe.resolvers.base import Resolution
from t3probe.resolvers.doh import DEFAULT_SERVER_BACKOFF_SECONDS, DohResolver
from t3probe.resolvers.dohclient import DohClient
from t3probe.resolvers.dohwire import MAX_CNAME_DEPTH
from tests.support.dohservers import (
    ADDRESS,
    ALIAS,
    ALIAS_TTL,
    CHAIN_LINKS,
    HOST,
    INTERNAL,
    LOOP,
    MISSING,
    NODATA,
    SERVERS,
    SERVFAIL,
    TTL,
    RealDohServer,
    start,
)
from tests.support.env import TIME_UNIT
from tests.support.fakes import FakeClock, MakeResolver, Sink
from tests.support.harness import Peer, free_port, leg, probe_config, running_probe

# The resolver's default: the make_resolver fixture leaves it alone.
BACKOFF = DEFAULT_SERVER_BACKOFF_SECONDS


class Launcher:
    """Starts each server the first time a test asks for it; stops them all at the end."""

    def __init__(self, directory: Path, pki: Pki) -> None:
        self._directory = directory
        self._pki = pki
        self._running: dict[str, RealDohServer] = {}

    def get(self, name: str) -> RealDohServer:
        if name not in self._running:
            self._running[name] = start(name, self._directory / name, self._pki)
        return self._running[name]

    def stop(self) -> None:
        for server in self._running.values():
            server.stop()


@pytest.fixture(scope="module")
def real(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("doh-servers"), pki)
    try:
        yield launcher
    finally:
        launcher.stop()


async def _fails(resolver: DohResolver, host: str) -> ProbeFailure:
    with pytest.raises(ProbeFailure) as info:
        await resolver.resolve(host)
    assert info.value.reason is Reason.DNS_FAILED
    return info.value


# -- answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVERS)
async def test_resolves_over_http2_cached_for_the_ttl_then_served_stale(
    name: str, real: Launcher, make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    server = real.get(name)
    resolver = make_resolver([server.url])
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert [s.http_version for s in resolver.servers] == ["HTTP/2"]
    with server.hung():
        clock.advance(TTL - 1)
        # Still fresh: nobody is asked, so the frozen server costs nothing.
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
        assert sink.reasons == []
        clock.advance(2)
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,), stale=True)
    assert sink.reasons == ["timeout"]
    assert sink.states == [(server.url, True), (server.url, False)]
    # Thawed, and once the back-off is over: fresh answers again.
    clock.advance(BACKOFF)
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert sink.states[-1] == (server.url, True)


@pytest.mark.parametrize("name", SERVERS)
async def test_a_cname_only_answer_is_followed_and_keeps_the_smallest_ttl(
    name: str, real: Launcher, make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    server = real.get(name)
    resolver = make_resolver([server.url])
    assert await resolver.resolve(ALIAS) == Resolution((ADDRESS,))
    with server.hung():
        clock.advance(ALIAS_TTL - 1)
        assert await resolver.resolve(ALIAS) == Resolution((ADDRESS,))
        assert sink.reasons == []
        clock.advance(2)  # past the CNAME's TTL, well before the address's
        assert await resolver.resolve(ALIAS) == Resolution((ADDRESS,), stale=True)
    assert sink.reasons == ["timeout"]


async def test_a_chain_spread_over_queries_is_bounded_and_its_loops_refused(
    real: Launcher, make_resolver: MakeResolver, sink: Sink
) -> None:
    resolver = make_resolver([real.get("unbound").url])
    # hop1 is MAX_CNAME_DEPTH links from an address: the longest chain allowed.
    assert CHAIN_LINKS - 1 == MAX_CNAME_DEPTH
    assert await resolver.resolve("hop1.lab.test") == Resolution((ADDRESS,))
    too_long = await _fails(resolver, "hop0.lab.test")
    loop = await _fails(resolver, LOOP)
    assert sink.reasons == ["malformed", "malformed"]
    assert "longer than" in too_long.detail
    assert "CNAME loop" in loop.detail


@pytest.mark.parametrize("name", SERVERS)
async def test_nxdomain_and_nodata_are_told_apart(
    name: str, real: Launcher, make_resolver: MakeResolver, sink: Sink
) -> None:
    resolver = make_resolver([real.get(name).url])
    missing = await _fails(resolver, MISSING)
    nodata = await _fails(resolver, NODATA)
    assert sink.reasons == ["nxdomain", "empty"]
    assert "nxdomain" in missing.detail
    assert "empty" in nodata.detail
    # A negative answer is an answer: the server stays in rotation.
    assert all(up for _, up in sink.states)


async def test_servfail_is_reported_and_the_next_server_asked(
    real: Launcher, make_resolver: MakeResolver, sink: Sink
) -> None:
    dnsdist, unbound = real.get("dnsdist"), real.get("unbound")
    resolver = make_resolver([dnsdist.url])
    await _fails(resolver, SERVFAIL)
    assert sink.reasons == ["servfail"]
    assert sink.states == [(dnsdist.url, False)]
    # unbound answers NXDOMAIN for that name: the second server's answer is the one kept.
    both = make_resolver([dnsdist.url, unbound.url], server_backoff_seconds=0)
    failure = await _fails(both, SERVFAIL)
    assert sink.reasons == ["servfail", "servfail", "nxdomain"]
    assert "servfail" in failure.detail and "nxdomain" in failure.detail


# -- fallback and server health -------------------------------------------------------------


async def test_a_hung_first_server_costs_its_timeout_once_not_at_every_refresh(
    real: Launcher, make_resolver: MakeResolver, clock: FakeClock, sink: Sink, dns_timeout: float
) -> None:
    first, second = real.get("knot-resolver"), real.get("unbound")
    backoff = 5 * TTL  # several refreshes fit inside it
    resolver = make_resolver([first.url, second.url], server_backoff_seconds=backoff)
    with first.hung():
        started = time.monotonic()
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
        assert time.monotonic() - started >= dns_timeout
        assert sink.reasons == ["timeout"]
        failed_at = clock.now
        for _ in range(3):
            clock.advance(TTL + 1)  # a refresh, within the back-off
            started = time.monotonic()
            assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
            assert time.monotonic() - started < dns_timeout / 2
        assert sink.reasons == ["timeout"]
        assert [s.up for s in resolver.servers] == [False, True]
        clock.now = failed_at + backoff + TTL  # the back-off is over: asked again, still hung
        await resolver.resolve(HOST)
        assert sink.reasons == ["timeout", "timeout"]
        assert resolver.servers[0].retry_at - clock.now == 2 * backoff
    clock.advance(2 * backoff + TTL)
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert [s.up for s in resolver.servers] == [True, True]
    assert sink.states[-1] == (first.url, True)


async def test_when_every_server_sits_out_the_one_due_first_is_asked(
    real: Launcher, make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    unbound, dnsdist = real.get("unbound"), real.get("dnsdist")
    resolver = make_resolver([unbound.url, dnsdist.url])
    with unbound.hung():
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))  # from dnsdist
        clock.advance(TTL + 1)  # unbound's back-off is over: asked first again
        with dnsdist.hung():
            assert await resolver.resolve(HOST) == Resolution((ADDRESS,), stale=True)
        assert sink.reasons == ["timeout", "timeout", "timeout"]
        # unbound failed twice (2 x 30 s), dnsdist once (30 s): both are sitting out, and
        # dnsdist's back-off ends first, though it comes second in the config.
        clock.advance(1)
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert sink.reasons == ["timeout"] * 3
    assert [s.up for s in resolver.servers] == [False, True]


# -- failures told apart --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outcome"),
    [("dnsdist", "HTTP/1.1"), ("unbound", "protocol_error"), ("knot-resolver", "protocol_error")],
)
async def test_an_http11_only_client_gets_a_protocol_error_from_http2_only_servers(
    name: str, outcome: str, real: Launcher, make_resolver: MakeResolver, pki: Pki, sink: Sink
) -> None:
    # What the aiohttp client before #19 met: now named, not "Bad status line".
    resolver = make_resolver(
        [real.get(name).url], client=DohClient(pki.client_context(), http2=False)
    )
    if outcome == "HTTP/1.1":
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
        assert resolver.servers[0].http_version == "HTTP/1.1"
        return
    failure = await _fails(resolver, HOST)
    assert sink.reasons == ["protocol_error"]
    assert "protocol_error" in failure.detail


async def test_refused_tls_and_protocol_failures_are_told_apart(
    real: Launcher, make_resolver: MakeResolver, pki: Pki, clock: FakeClock, sink: Sink
) -> None:
    unbound = real.get("unbound")
    refused = f"https://127.0.0.1:{free_port()}/dns-query"
    http11 = make_resolver(
        [refused, unbound.url], client=DohClient(pki.client_context(), http2=False)
    )
    failure = await _fails(http11, HOST)
    assert sink.reasons == ["connect_error", "protocol_error"]
    assert "connect_error" in failure.detail and "protocol_error" in failure.detail
    # The system trust store does not know the throw-away CA.
    untrusted = make_resolver([unbound.url], ssl_context=None)
    failure = await _fails(untrusted, HOST)
    assert sink.reasons[-1] == "tls_error"
    assert "tls_error" in failure.detail


async def test_one_connection_carries_every_lookup(
    real: Launcher, make_resolver: MakeResolver, pki: Pki, sink: Sink
) -> None:
    client = DohClient(pki.client_context())
    resolver = make_resolver([real.get("knot-resolver").url], client=client)
    for host in (HOST, ALIAS, INTERNAL, HOST.upper()):
        await resolver.resolve(host)
    # Parallel POSTs on one HTTP/2 connection: each must reach knot-resolver whole.
    missing = [f"n{index}.{MISSING}" for index in range(20)]
    results = await asyncio.gather(*(resolver.resolve(h) for h in missing), return_exceptions=True)
    assert all(isinstance(result, ProbeFailure) for result in results)
    assert sink.reasons == ["nxdomain"] * 20
    assert client.connections_opened == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure(
    real: Launcher, make_resolver: MakeResolver, pki: Pki, clock: FakeClock, sink: Sink
) -> None:
    # unbound (idle timeout 1 s here, 30 s by default) closes without a GOAWAY, which an
    # HTTP/2 client only finds out by using the connection.
    client = DohClient(pki.client_context())
    resolver = make_resolver([real.get("unbound").url], client=client)
    await resolver.resolve(HOST)
    await asyncio.sleep(1.5)  # the server's idle timeout (1 s here) passes
    clock.advance(TTL + 1)
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert sink.reasons == []
    assert client.connections_opened == 2


async def test_proxy_variables_do_not_reroute_dns(
    real: Launcher, make_resolver: MakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    contacted: list[int] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacted.append(1)
        writer.close()

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        resolver = make_resolver([real.get("dnsdist").url])
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    finally:
        listener.close()
        await listener.wait_closed()
    assert contacted == []


# -- a leg through each server --------------------------------------------------------------


def _doh_leg(
    server: RealDohServer, pki: Pki, peer: Peer, host: str = HOST, **extra: Any
) -> dict[str, Any]:
    resolver = {"kind": "doh", "servers": [server.url], "ca_file": str(pki.ca_cert),
                "timeout_seconds": 0.2 * TIME_UNIT, "min_ttl_seconds": 0.1}  # fmt: skip
    return leg("cdn", f"ws://{host}:{peer.port}/probe/ws", resolver=resolver, **extra)


@pytest.mark.parametrize("name", SERVERS)
async def test_a_leg_resolves_through_the_server(
    name: str, real: Launcher, pki: Pki, peer: Peer
) -> None:
    server = real.get(name)
    async with running_probe(probe_config([_doh_leg(server, pki, peer)])) as probe:
        await probe.wait_for("cdn", "up")
        assert probe.metric("t3probe_doh_server_up", leg="cdn", server=server.url) == 1
        assert (
            probe.metric("t3probe_connect_duration_seconds_count", leg="cdn", phase="dns") or 0
        ) >= 1
        assert not [e for e in probe.events if e.kind == "down"]


async def test_forbid_addresses_refuses_what_the_server_answers(
    real: Launcher, pki: Pki, peer: Peer
) -> None:
    server = real.get("knot-resolver")
    cdn = _doh_leg(server, pki, peer, host=INTERNAL, forbid_addresses=["10.0.0.0/8"])
    async with running_probe(probe_config([cdn])) as probe:
        down = await probe.wait_for("cdn", "down")
        assert down.reason is Reason.ROUTE_MISMATCH
        assert "10.0.20.203" in down.detail
        assert probe.metric("t3probe_dns_failures_total", leg="cdn", reason="forbidden_address")


async def test_a_hung_server_fails_the_leg_as_dns_and_the_wait_is_timed(
    real: Launcher, pki: Pki, peer: Peer
) -> None:
    server = real.get("dnsdist")
    with server.hung():
        async with running_probe(probe_config([_doh_leg(server, pki, peer)])) as probe:
            down = await probe.wait_for("cdn", "down")
            assert down.reason is Reason.DNS_FAILED
            assert "timeout" in down.detail
            count = probe.metric("t3probe_connect_duration_seconds_count", leg="cdn", phase="dns")
            total = probe.metric("t3probe_connect_duration_seconds_sum", leg="cdn", phase="dns")
            assert count and count >= 1
            assert total is not None and total >= 0.2 * TIME_UNIT
            assert probe.metric("t3probe_doh_server_up", leg="cdn", server=server.url) == 0
