"""A real RFC 8484 DoH server for the lab and the tests, with faults to inject.

It answers A/AAAA queries for its records over real HTTPS (POST and GET), so the probe's
``doh`` resolver runs unmodified against it. Faults are switched at runtime, either as
context managers (``with server.down(): ...``) for tests and scripted scenarios, or with
``set_fault`` for a control endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from aiohttp import web

DNS_MESSAGE = "application/dns-message"
PATH = "/dns-query"
# A DNS query is a few dozen bytes; the bound only has to stop abuse, not fit answers.
MAX_QUERY_BYTES = 4096
DEFAULT_TTL = 60

FaultKind = Literal["normal", "down", "servfail", "garbage", "slow", "lie", "http_error"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = "normal"
    seconds: float = 0.0  # slow
    address: str = ""  # lie
    status: int = 503  # http_error


NORMAL = Fault()


class DohServer:
    """Answers ``name -> addresses`` records; unknown names get NXDOMAIN."""

    def __init__(
        self, records: dict[str, Sequence[str]] | None = None, *, ttl: int = DEFAULT_TTL
    ) -> None:
        self.ttl = ttl
        self._records: dict[str, tuple[str, ...]] = {}
        for name, addresses in (records or {}).items():
            self.set_record(name, addresses)
        self._fault = NORMAL
        # Set whenever the fault changes or the server stops, so requests held by
        # ``down`` or ``slow`` are released instead of outliving their reason.
        self._fault_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.queries_received = 0
        self.queries_answered = 0

    # -- records -----------------------------------------------------------------
    def set_record(self, name: str, addresses: Sequence[str]) -> None:
        self._records[_key(name)] = tuple(str(ipaddress.ip_address(a)) for a in addresses)

    def remove_record(self, name: str) -> None:
        self._records.pop(_key(name), None)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        """Listen on ``host:port`` (0 picks a free port); plain HTTP without a context."""
        if self._runner is not None:
            raise RuntimeError("DohServer already started")
        app = web.Application(client_max_size=MAX_QUERY_BYTES)
        app.router.add_route("POST", PATH, self._handle)
        app.router.add_route("GET", PATH, self._handle)
        # handler_cancellation: a client that timed out leaves no handler behind;
        # a short shutdown_timeout keeps stop() fast even with requests held open.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        self._url = f"{scheme}://{shown}:{bound_port}{PATH}"

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("DohServer not started")
        return self._url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self._wake()
        if runner is not None:
            await runner.cleanup()

    # -- faults ------------------------------------------------------------------
    @property
    def fault(self) -> Fault:
        return self._fault

    def set_fault(self, fault: Fault) -> None:
        self._fault = fault
        self._wake()

    @contextlib.contextmanager
    def _faulted(self, fault: Fault) -> Iterator[None]:
        previous = self._fault
        self.set_fault(fault)
        try:
            yield
        finally:
            self.set_fault(previous)

    def down(self) -> contextlib.AbstractContextManager[None]:
        """Accept requests and never answer them: clients run into their timeout."""
        return self._faulted(Fault("down"))

    def servfail(self) -> contextlib.AbstractContextManager[None]:
        return self._faulted(Fault("servfail"))

    def garbage(self) -> contextlib.AbstractContextManager[None]:
        """HTTP 200, the right content type, and random bytes for a body."""
        return self._faulted(Fault("garbage"))

    def slow(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        return self._faulted(Fault("slow", seconds=seconds))

    def lie(self, address: str) -> contextlib.AbstractContextManager[None]:
        """Answer every known name with ``address`` (e.g. a forbidden internal one)."""
        return self._faulted(Fault("lie", address=str(ipaddress.ip_address(address))))

    def http_error(self, status: int = 503) -> contextlib.AbstractContextManager[None]:
        return self._faulted(Fault("http_error", status=status))

    def _wake(self) -> None:
        self._fault_changed.set()
        self._fault_changed = asyncio.Event()

    # -- serving -----------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.queries_received += 1
        wire = await _query_bytes(request)
        if wire is None:
            return web.Response(status=400, text="not a DNS query\n")
        try:
            query = dns.message.from_wire(wire)
        # dnspython raises many exception types on hostile bytes; all are a bad request.
        except Exception:  # noqa: BLE001
            return web.Response(status=400, text="not a DNS query\n")
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return web.Response(status=400, text="not a DNS query\n")
        fault = self._fault
        if fault.kind == "down":
            await self._held_until_change()
            raise web.HTTPServiceUnavailable()
        if fault.kind == "slow":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.seconds):
                    await self._held_until_change()
        if fault.kind == "http_error":
            return web.Response(status=fault.status, text="injected error\n")
        if fault.kind == "garbage":
            return _dns_response(os.urandom(64), ttl=0)
        answer = self._answer(query, fault)
        self.queries_answered += 1
        return _dns_response(answer.to_wire(), ttl=self.ttl)

    async def _held_until_change(self) -> None:
        if self._runner is None:
            return
        await self._fault_changed.wait()

    def _answer(self, query: dns.message.Message, fault: Fault) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if fault.kind == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        question = query.question[0]
        addresses = self._records.get(_key(question.name.to_text()))
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if fault.kind == "lie":
            addresses = (fault.address,)
        wanted = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        matching = [a for a in addresses if ipaddress.ip_address(a).version == wanted]
        if question.rdclass == dns.rdataclass.IN and matching:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, self.ttl, dns.rdataclass.IN, question.rdtype, matching
                )
            )
        return response


async def _query_bytes(request: web.Request) -> bytes | None:
    if request.method == "POST":
        if request.content_type != DNS_MESSAGE:
            return None
        # client_max_size already rejects larger bodies with 413.
        return await request.read()
    encoded = request.query.get("dns")
    if encoded is None or len(encoded) > MAX_QUERY_BYTES:
        return None
    try:
        # RFC 8484 uses base64url without padding; restore it for the decoder.
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None


def _dns_response(body: bytes, *, ttl: int) -> web.Response:
    return web.Response(
        body=body,
        content_type=DNS_MESSAGE,
        headers={"Cache-Control": f"max-age={ttl}"},
    )


def _key(name: str) -> str:
    return name.lower().rstrip(".")
