"""The DoH HTTP client: bounded answers, and requests leaving in one write."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import dns.rdatatype
import httpcore2
import pytest
from aiohttp import web

from t3probe.lab.pki import Pki
from t3probe.reasons import DnsFailure
from t3probe.resolvers.dohclient import DohClient, ExchangeError
from t3probe.resolvers.dohtransport import CoalescingStream
from t3probe.resolvers.dohwire import MAX_WIRE_BYTES, build_query

WIRE = build_query("t3.lab.test", dns.rdatatype.A, 7)


async def _oversize(request: web.Request) -> web.StreamResponse:
    if request.query.get("chunked"):
        # No Content-Length: the bound has to hold while reading.
        response = web.StreamResponse(headers={"Content-Type": "application/dns-message"})
        await response.prepare(request)
        for _ in range(4):
            await response.write(b"\0" * (MAX_WIRE_BYTES // 2))
        await response.write_eof()
        return response
    return web.Response(body=b"\0" * (MAX_WIRE_BYTES + 1), content_type="application/dns-message")


async def _wrong_type(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>captive portal</html>", content_type="text/html")


@pytest.fixture
async def hostile(pki: Pki) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/big", _oversize)
    app.router.add_post("/html", _wrong_type)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    yield f"https://127.0.0.1:{site.port}"
    await runner.cleanup()


@pytest.mark.parametrize("path", ["/big", "/big?chunked=1"], ids=["content-length", "chunked"])
async def test_an_answer_larger_than_any_dns_message_is_malformed(
    pki: Pki, hostile: str, path: str
) -> None:
    client = DohClient(pki.client_context())
    try:
        with pytest.raises(ExchangeError) as info:
            await client.exchange(hostile + path, WIRE)
    finally:
        await client.aclose()
    assert info.value.reason is DnsFailure.MALFORMED


async def test_another_content_type_is_an_http_error(pki: Pki, hostile: str) -> None:
    client = DohClient(pki.client_context())
    try:
        with pytest.raises(ExchangeError) as info:
            await client.exchange(hostile + "/html", WIRE)
    finally:
        await client.aclose()
    assert info.value.reason is DnsFailure.HTTP_ERROR
    assert "text/html" in info.value.detail


class Recording(httpcore2.AsyncNetworkStream):
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[bytes] = []
        self.fail = fail

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.fail:
            raise httpcore2.WriteError("connection reset")
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"answer"

    async def aclose(self) -> None:
        return None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return self


async def test_writes_of_one_step_leave_in_one_write_before_the_read() -> None:
    inner = Recording()
    stream = CoalescingStream(inner, {}, "127.0.0.1:443")
    for frame in (b"HEADERS", b"DATA", b"END_STREAM"):
        await stream.write(frame)
    assert inner.writes == []
    assert await stream.read(100) == b"answer"
    assert inner.writes == [b"HEADERSDATAEND_STREAM"]


async def test_a_request_is_sent_even_if_nobody_reads() -> None:
    # Another stream of the same HTTP/2 connection may be the one reading.
    inner = Recording()
    stream = CoalescingStream(inner, {}, "127.0.0.1:443")
    await stream.write(b"HEADERS")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert inner.writes == [b"HEADERS"]


async def test_a_failed_write_surfaces_at_the_next_read() -> None:
    stream = CoalescingStream(Recording(fail=True), {}, "127.0.0.1:443")
    await stream.write(b"HEADERS")
    with pytest.raises(httpcore2.WriteError):
        await stream.read(100)
