"""The DoH resolver against real DoH servers on loopback, over TLS with a throw-away CA."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.rdatatype
import pytest

from t3probe.config import DohResolverConfig
from t3probe.lab.dohserver import DohServer
from t3probe.lab.pki import Pki
from t3probe.reasons import ProbeFailure, Reason
from t3probe.resolvers.base import Resolution
from t3probe.resolvers.doh import DohResolver
from t3probe.resolvers.dohclient import DohClient
from t3probe.resolvers.dohwire import build_query, parse_answer
from tests.support.fakes import FakeClock, MakeResolver, Sink

HOST = "t3.lab.test"
ADDRESS = "127.0.0.2"
TTL = 60


@pytest.fixture
async def servers(pki: Pki) -> AsyncIterator[list[DohServer]]:
    started: list[DohServer] = []
    try:
        for _ in range(2):
            server = DohServer({HOST: [ADDRESS]}, ttl=TTL)
            await server.start("127.0.0.1", 0, pki.server_context())
            started.append(server)
        yield started
    finally:
        for server in started:
            await server.stop()


def _urls(servers: list[DohServer]) -> list[str]:
    return [server.url for server in servers]


async def test_resolves(servers: list[DohServer], make_resolver: MakeResolver, sink: Sink) -> None:
    resolver = make_resolver(_urls(servers))
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert servers[0].queries_answered == 1
    assert servers[1].queries_received == 0
    assert sink.reasons == []


async def test_second_server_answers_when_first_is_down(
    servers: list[DohServer], make_resolver: MakeResolver, sink: Sink, dns_timeout: float
) -> None:
    resolver = make_resolver(_urls(servers))
    started = time.monotonic()
    with servers[0].down():
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert time.monotonic() - started >= dns_timeout
    assert sink.reasons == ["timeout"]
    assert servers[1].queries_answered == 1


async def test_answer_cached_for_its_ttl(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock
) -> None:
    resolver = make_resolver(_urls(servers))
    await resolver.resolve(HOST)
    clock.advance(TTL - 1)
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    assert servers[0].queries_received == 1
    clock.advance(2)
    await resolver.resolve(HOST)
    assert servers[0].queries_received == 2


async def test_short_ttl_is_raised_to_the_minimum(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock
) -> None:
    servers[0].ttl = 0
    resolver = make_resolver(_urls(servers), min_ttl_seconds=5.0)
    await resolver.resolve(HOST)
    clock.advance(4.9)
    await resolver.resolve(HOST)
    assert servers[0].queries_received == 1


async def test_long_ttl_is_capped(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock
) -> None:
    servers[0].ttl = 2**31 - 1  # 68 years, as a hostile or broken server may say
    resolver = make_resolver(_urls(servers), max_ttl_seconds=3600.0)
    await resolver.resolve(HOST)
    clock.advance(3599)
    await resolver.resolve(HOST)
    assert servers[0].queries_received == 1
    clock.advance(2)
    await resolver.resolve(HOST)
    assert servers[0].queries_received == 2


async def test_the_configured_ttl_cap_reaches_the_resolver(
    servers: list[DohServer], pki: Pki, clock: FakeClock
) -> None:
    assert DohResolverConfig(kind="doh", servers=[servers[0].url]).max_ttl_seconds == 3600.0
    servers[0].ttl = 2**31 - 1
    config = DohResolverConfig(
        kind="doh", servers=[servers[0].url], ca_file=pki.ca_cert, max_ttl_seconds=120.0
    )
    resolver = DohResolver.from_config(config, Sink(), clock)
    try:
        await resolver.resolve(HOST)
        clock.advance(121)
        await resolver.resolve(HOST)
    finally:
        await resolver.close()
    assert servers[0].queries_received == 2


async def test_served_stale_while_every_server_is_down(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    resolver = make_resolver(_urls(servers), max_stale_seconds=300.0)
    await resolver.resolve(HOST)
    clock.advance(TTL + 100)
    with servers[0].down(), servers[1].down():
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,), stale=True)
        assert sink.reasons == ["timeout", "timeout"]
        clock.advance(300)
        with pytest.raises(ProbeFailure) as info:
            await resolver.resolve(HOST)
    assert info.value.reason is Reason.DNS_FAILED
    assert sink.reasons == ["timeout"] * 4
    # Once a server is back the answer is fresh again.
    assert await resolver.resolve(HOST) == Resolution((ADDRESS,))


async def test_fails_within_the_timeout_when_down_and_nothing_cached(
    servers: list[DohServer], make_resolver: MakeResolver, sink: Sink, dns_timeout: float,
    time_unit: float,
) -> None:  # fmt: skip
    resolver = make_resolver([servers[0].url])
    started = time.monotonic()
    with servers[0].down(), pytest.raises(ProbeFailure) as info:
        await resolver.resolve(HOST)
    elapsed = time.monotonic() - started
    assert dns_timeout <= elapsed < dns_timeout + 0.5 * time_unit
    assert info.value.reason is Reason.DNS_FAILED
    assert servers[0].url in info.value.detail
    assert "timeout" in info.value.detail
    assert sink.reasons == ["timeout"]


async def test_failure_detail_is_bounded(
    servers: list[DohServer], make_resolver: MakeResolver, sink: Sink
) -> None:
    long_urls = [f"{servers[0].url}?pad={'x' * 400}", f"{servers[1].url}?pad={'y' * 400}"]
    resolver = make_resolver(long_urls)
    with servers[0].servfail(), servers[1].servfail(), pytest.raises(ProbeFailure) as info:
        await resolver.resolve(HOST)
    assert len(info.value.detail) <= 300
    assert sink.reasons == ["servfail", "servfail"]


async def test_certificate_for_another_name_is_a_tls_error(
    pki: Pki, servers: list[DohServer], make_resolver: MakeResolver, sink: Sink
) -> None:
    leaf = pki.issue("elsewhere", ["elsewhere.lab.test"], ["127.0.0.9"])
    impostor = DohServer({HOST: ["127.0.0.66"]})
    await impostor.start("127.0.0.1", 0, leaf.server_context())
    try:
        resolver = make_resolver([impostor.url, servers[0].url])
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    finally:
        await impostor.stop()
    assert sink.reasons == ["tls_error"]
    assert impostor.queries_received == 0


async def test_without_the_ca_file_the_throwaway_ca_is_not_trusted(
    servers: list[DohServer], clock: FakeClock, sink: Sink, dns_timeout: float
) -> None:
    config = DohResolverConfig(kind="doh", servers=[servers[0].url], timeout_seconds=dns_timeout)
    resolver = DohResolver.from_config(config, sink, clock)
    try:
        with pytest.raises(ProbeFailure):
            await resolver.resolve(HOST)
    finally:
        await resolver.close()
    assert sink.reasons == ["tls_error"]


async def test_from_config_trusts_the_ca_file(
    pki: Pki, servers: list[DohServer], clock: FakeClock, sink: Sink, dns_timeout: float
) -> None:
    config = DohResolverConfig(
        kind="doh",
        servers=_urls(servers),
        timeout_seconds=dns_timeout,
        ca_file=pki.ca_cert,
        min_ttl_seconds=0,
    )
    resolver = DohResolver.from_config(config, sink, clock)
    try:
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    finally:
        await resolver.close()
    assert sink.reasons == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("garbage", "malformed"),
        ("servfail", "servfail"),
        ("http_error", "http_error"),
        ("unknown_name", "nxdomain"),
        ("ipv6_only", "empty"),
    ],
)
async def test_server_fault_is_reported_with_its_reason(
    servers: list[DohServer], make_resolver: MakeResolver, sink: Sink, fault: str, reason: str
) -> None:
    server = servers[0]
    resolver = make_resolver([server.url])
    host = HOST
    injected: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if fault == "garbage":
        injected = server.garbage()
    elif fault == "servfail":
        injected = server.servfail()
    elif fault == "http_error":
        injected = server.http_error(503)
    elif fault == "unknown_name":
        host = "missing.lab.test"
    elif fault == "ipv6_only":
        server.set_record(HOST, ["::1"])
    with injected, pytest.raises(ProbeFailure) as info:
        await resolver.resolve(host)
    assert info.value.reason is Reason.DNS_FAILED
    assert sink.reasons == [reason]


async def test_refused_connection_is_a_connect_error(
    make_resolver: MakeResolver, sink: Sink
) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    resolver = make_resolver([f"https://127.0.0.1:{port}/dns-query"])
    with pytest.raises(ProbeFailure):
        await resolver.resolve(HOST)
    assert sink.reasons == ["connect_error"]


async def test_slow_server_within_the_timeout_answers_beyond_it_times_out(
    servers: list[DohServer], make_resolver: MakeResolver, sink: Sink, dns_timeout: float,
    clock: FakeClock,
) -> None:  # fmt: skip
    resolver = make_resolver([servers[0].url], max_stale_seconds=0)
    with servers[0].slow(dns_timeout / 4):
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    clock.advance(TTL + 1)
    with servers[0].slow(dns_timeout * 3), pytest.raises(ProbeFailure):
        await resolver.resolve(HOST)
    assert sink.reasons == ["timeout"]


async def test_a_lying_server_is_believed(
    servers: list[DohServer], make_resolver: MakeResolver
) -> None:
    # The resolver cannot know; route integrity (forbid_addresses) is the leg's job.
    resolver = make_resolver([servers[0].url])
    with servers[0].lie("10.0.20.203"):
        assert await resolver.resolve(HOST) == Resolution(("10.0.20.203",))


async def test_nxdomain_is_an_answer_and_not_papered_over_with_stale_data(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    resolver = make_resolver([servers[0].url])
    await resolver.resolve(HOST)
    clock.advance(TTL + 1)
    servers[0].remove_record(HOST)
    with pytest.raises(ProbeFailure):
        await resolver.resolve(HOST)
    assert sink.reasons == ["nxdomain"]
    # The cached entry went with it: a later outage has nothing stale to serve.
    with servers[0].down(), pytest.raises(ProbeFailure):
        await resolver.resolve(HOST)


async def test_concurrent_resolves_share_one_query(
    servers: list[DohServer], make_resolver: MakeResolver, dns_timeout: float
) -> None:
    resolver = make_resolver(_urls(servers))
    with servers[0].slow(dns_timeout / 2):
        results = await asyncio.gather(*(resolver.resolve(HOST) for _ in range(5)))
    assert results == [Resolution((ADDRESS,))] * 5
    assert servers[0].queries_received == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_query(
    servers: list[DohServer], make_resolver: MakeResolver, dns_timeout: float
) -> None:
    resolver = make_resolver([servers[0].url])
    with servers[0].slow(dns_timeout / 2):
        first = asyncio.create_task(resolver.resolve(HOST))
        second = asyncio.create_task(resolver.resolve(HOST))
        await asyncio.sleep(dns_timeout / 8)
        first.cancel()
        assert await second == Resolution((ADDRESS,))
    with pytest.raises(asyncio.CancelledError):
        await first
    assert servers[0].queries_received == 1


async def test_ip_literal_needs_no_query(
    servers: list[DohServer], make_resolver: MakeResolver
) -> None:
    resolver = make_resolver([servers[0].url])
    assert await resolver.resolve("127.0.0.5") == Resolution(("127.0.0.5",))
    assert await resolver.resolve("::1") == Resolution(("::1",))
    assert servers[0].queries_received == 0


async def test_the_connection_is_kept_between_lookups_and_close_closes_it(
    pki: Pki, servers: list[DohServer], make_resolver: MakeResolver
) -> None:
    # Was: the aiohttp session factory is used once; the client is now a DohClient.
    client = DohClient(pki.client_context())
    resolver = make_resolver([servers[0].url], client=client)
    await resolver.resolve(HOST)
    servers[0].set_record("other.lab.test", ["127.0.0.3"])
    await resolver.resolve("other.lab.test")
    assert client.connections_opened == 1
    await resolver.close()
    with pytest.raises(RuntimeError):
        await resolver.resolve(HOST)


async def test_close_cancels_a_query_in_flight(
    servers: list[DohServer], make_resolver: MakeResolver, dns_timeout: float
) -> None:
    resolver = make_resolver([servers[0].url], timeout=dns_timeout * 10)
    with servers[0].down():
        pending = asyncio.create_task(resolver.resolve(HOST))
        await asyncio.sleep(dns_timeout / 4)
        started = time.monotonic()
        await resolver.close()
        assert time.monotonic() - started < dns_timeout
        with pytest.raises(asyncio.CancelledError):
            await pending


# -- the lab's DoH server itself --------------------------------------------------------


async def _client(pki: Pki) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context()))


async def test_server_answers_get_with_base64url(pki: Pki, servers: list[DohServer]) -> None:
    wire = build_query(HOST, dns.rdatatype.A, 7)
    encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    async with (
        await _client(pki) as client,
        client.get(servers[0].url, params={"dns": encoded}) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/dns-message"
        assert response.headers["Cache-Control"] == f"max-age={TTL}"
        body = await response.read()
    assert parse_answer(body, HOST, dns.rdatatype.A, 7).addresses == (ADDRESS,)


async def test_server_answers_aaaa(pki: Pki, servers: list[DohServer]) -> None:
    servers[0].set_record(HOST, ["127.0.0.2", "::1"])
    async with (
        await _client(pki) as client,
        client.post(
            servers[0].url,
            data=build_query(HOST, dns.rdatatype.AAAA, 9),
            headers={"Content-Type": "application/dns-message"},
        ) as response,
    ):
        body = await response.read()
    assert parse_answer(body, HOST, dns.rdatatype.AAAA, 9).addresses == ("::1",)


DNS_POST = {"Content-Type": "application/dns-message"}


@pytest.mark.parametrize(
    ("method", "kwargs", "status"),
    [
        ("POST", {"data": b"\x00" * 10, "headers": {"Content-Type": "text/plain"}}, 400),
        ("POST", {"data": b"\x00" * 10, "headers": DNS_POST}, 400),
        ("POST", {"data": b"\x00" * 8192, "headers": DNS_POST}, 413),
        ("GET", {"params": {"dns": "!!!"}}, 400),
        ("GET", {}, 400),
        ("PUT", {}, 405),
    ],
    ids=["wrong content type", "not DNS", "oversize body", "bad base64", "no dns param", "PUT"],
)  # fmt: skip
async def test_server_rejects_bad_requests(
    pki: Pki, servers: list[DohServer], method: str, kwargs: dict[str, Any], status: int
) -> None:
    async with (
        await _client(pki) as client,
        client.request(method, servers[0].url, **kwargs) as response,
    ):
        assert response.status == status
    assert servers[0].queries_answered == 0


async def test_server_stop_releases_requests_held_down(pki: Pki, time_unit: float) -> None:
    server = DohServer({HOST: [ADDRESS]})
    await server.start("127.0.0.1", 0, pki.server_context())
    async with await _client(pki) as client:
        with server.down():
            request = asyncio.create_task(
                client.post(
                    server.url,
                    data=build_query(HOST, dns.rdatatype.A, 1),
                    headers={"Content-Type": "application/dns-message"},
                )
            )
            await asyncio.sleep(0.05 * time_unit)
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 1.0 * time_unit
        response = await request
        response.release()
        assert response.status == 503


async def test_a_failure_names_the_servers_left_out_for_their_back_off(
    servers: list[DohServer], make_resolver: MakeResolver, clock: FakeClock, sink: Sink
) -> None:
    resolver = make_resolver(_urls(servers), max_stale_seconds=0, server_backoff_seconds=300)
    with servers[0].down():
        assert await resolver.resolve(HOST) == Resolution((ADDRESS,))
    clock.advance(TTL + 1)
    with servers[1].servfail(), pytest.raises(ProbeFailure) as info:
        await resolver.resolve(HOST)
    assert "1 more server(s) backing off, not asked" in info.value.detail
    assert sink.reasons == ["timeout", "servfail"]
    assert servers[0].queries_received == 1
