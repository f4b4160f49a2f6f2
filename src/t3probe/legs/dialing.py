"""Connections that go where the leg's resolver says, with every phase timed.

aiohttp keeps Host, SNI and certificate checks on the URL's host whatever address the
resolver returns, which is exactly what a pinned or DoH-resolved leg needs. The phases
(dns, tcp, tls, then the upgrade or the request) are timed and kept in the session's
progress, so a failure names where the attempt stopped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler

from t3probe.legs.base import LegContext, SessionProgress
from t3probe.reasons import (
    LOCAL_ERRNOS,
    MAX_DETAIL,
    UNREACHABLE_ERRNOS,
    Classified,
    DnsFailure,
    Phase,
    ProbeFailure,
    Reason,
)
from t3probe.redact import redact_url


def check_route(ctx: LegContext, addresses: Sequence[str]) -> tuple[str, ...]:
    """Drop forbidden addresses; if none is left the leg would measure the wrong path."""
    forbidden = ctx.leg.forbid_addresses
    if not forbidden:
        return tuple(addresses)
    allowed = tuple(
        address
        for address in addresses
        if not any(ipaddress.ip_address(address) in network for network in forbidden)
    )
    if not allowed:
        ctx.recorder.dns_failure(ctx.leg.name, DnsFailure.FORBIDDEN_ADDRESS)
        raise ProbeFailure(
            Reason.ROUTE_MISMATCH,
            f"{ctx.leg.host} resolved to {', '.join(addresses)[:200]}, inside forbid_addresses",
        )
    return allowed


class _LegResolver(AbstractResolver):
    """Bridges aiohttp's connector to the leg's resolver, timing the dns phase."""

    def __init__(self, ctx: LegContext, progress: SessionProgress) -> None:
        self._ctx = ctx
        self._progress = progress

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self._progress.phase = "dns"
        started = time.perf_counter()
        try:
            resolution = await self._ctx.resolver.resolve(host)
        finally:
            # Failed lookups too: a slow failure (a hung DoH server) is where the time goes.
            self._ctx.recorder.observe_connect_phase(
                self._ctx.leg.name, "dns", time.perf_counter() - started
            )
        if resolution.stale:
            self._progress.dns_stale = True
        addresses = check_route(self._ctx, resolution.addresses)
        self._progress.addresses = addresses
        self._progress.phase = "tcp"
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class _PhasedConnector(aiohttp.TCPConnector):
    """A connector that tells the TCP connect from the TLS handshake.

    aiohttp connects and handshakes in one call and its trace hooks only see both
    together, yet a lost SYN and a stalled TLS handshake point at different segments.
    """

    def __init__(self, ctx: LegContext, progress: SessionProgress, **options: Any) -> None:
        if not hasattr(aiohttp.TCPConnector, "_wrap_create_connection"):
            raise RuntimeError("aiohttp no longer has TCPConnector._wrap_create_connection")
        super().__init__(**options)
        self._leg_ctx = ctx
        self._leg_progress = progress

    async def _wrap_create_connection(
        self, *args: Any, **kwargs: Any
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        """The one place that reaches into aiohttp's connector (a private method).

        aiohttp opens the socket here, then hands it to ``loop.create_connection``, which
        calls the protocol factory (the first argument) once the socket is connected and
        before a TLS handshake starts: wrapping that factory marks the end of TCP. No
        public hook sits between the two; tests/test_connect_phases.py fails if a new
        aiohttp changes this.
        """
        protocol_factory: Callable[[], ResponseHandler] = args[0]
        uses_tls = bool(kwargs.get("ssl"))
        ctx, progress = self._leg_ctx, self._leg_progress
        progress.phase = "tcp"
        started = time.perf_counter()
        tls_started = started

        def tcp_connected() -> ResponseHandler:
            nonlocal tls_started
            tls_started = time.perf_counter()
            ctx.recorder.observe_connect_phase(ctx.leg.name, "tcp", tls_started - started)
            if uses_tls:
                progress.phase = "tls"
            return protocol_factory()

        connection = await super()._wrap_create_connection(tcp_connected, *args[1:], **kwargs)
        if uses_tls:
            elapsed = time.perf_counter() - tls_started
            ctx.recorder.observe_connect_phase(ctx.leg.name, "tls", elapsed)
        return connection


def _phase_tracer(
    ctx: LegContext,
    progress: SessionProgress,
    *,
    after_connect: Phase,
    watch_connection_loss: bool,
) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_create_end(
        session: aiohttp.ClientSession, trace_ctx: SimpleNamespace, params: Any
    ) -> None:
        progress.phase = after_connect
        progress.upgrade_started = time.perf_counter()

    async def on_request_end(
        session: aiohttp.ClientSession,
        trace_ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        connection = params.response.connection
        # Only a session of one connection (a WebSocket) needs it; a kept-alive one would
        # add a callback to the same connection's future at every request.
        if watch_connection_loss and connection is not None and connection.protocol is not None:
            closed = connection.protocol.closed
            if closed is not None:
                # Retrieved here so an unread loss never logs "exception was never retrieved".
                closed.add_done_callback(_consume)
            progress.connection_lost = closed
        required = ctx.leg.require_header
        # Raising inside a trace hook would leak the response; the leg checks this flag.
        if required is not None and required not in params.response.headers:
            progress.proof_missing = required

    async def on_request_redirect(
        session: aiohttp.ClientSession,
        trace_ctx: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        # aiohttp's ws_connect follows redirects and offers no switch; record it so the
        # leg refuses the result instead of measuring another route.
        if progress.redirected is None:
            location = params.response.headers.get("Location", "")
            progress.redirected = f"{params.response.status} to {redact_url(location)}"

    trace.on_request_redirect.append(on_request_redirect)
    trace.on_connection_create_end.append(on_create_end)
    trace.on_request_end.append(on_request_end)
    return trace


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def open_session(
    ctx: LegContext,
    progress: SessionProgress,
    ssl_context: ssl.SSLContext | None,
    *,
    keepalive: bool,
) -> aiohttp.ClientSession:
    """A client session for one leg; ``keepalive`` is an HTTP leg's, else a WebSocket's.

    Once connected, a WebSocket attempt is in its upgrade; an HTTP leg's request is
    already its session (a stall there is the process, not the connection).
    """
    connector = _PhasedConnector(
        ctx,
        progress,
        resolver=_LegResolver(ctx, progress),
        use_dns_cache=False,
        ssl=ssl_context if ssl_context is not None else True,
        limit=1,
        force_close=not keepalive,
        enable_cleanup_closed=False,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        trace_configs=[
            _phase_tracer(
                ctx,
                progress,
                after_connect="session" if keepalive else "upgrade",
                watch_connection_loss=not keepalive,
            )
        ],
        auto_decompress=False,
        # Header sizes bounded: a hostile peer cannot make the probe buffer megabytes.
        max_line_size=8190,
        max_field_size=8190,
    )
    _never_retry(session)
    return session


def _never_retry(session: aiohttp.ClientSession) -> None:
    """Turn off aiohttp's silent retry of an idempotent request on a reused connection.

    A GET that met a RST on its kept-alive connection is retried on a new one, and the
    RST is never seen: a probe must see every failure. aiohttp offers no public switch
    (its own test client flips this attribute), so this is the one place that does; a
    test fails if a new aiohttp renames it.
    """
    if not hasattr(session, "_retry_connection"):
        raise RuntimeError("aiohttp no longer has ClientSession._retry_connection")
    session._retry_connection = False


def check_peer(ctx: LegContext, peername: Any) -> None:
    """Belt and braces: the socket's real peer must not be in a forbidden range either."""
    if not ctx.leg.forbid_addresses or not isinstance(peername, tuple):
        return
    address = ipaddress.ip_address(str(peername[0]).split("%")[0])
    for network in ctx.leg.forbid_addresses:
        if address in network:
            raise ProbeFailure(Reason.ROUTE_MISMATCH, f"connected to {address}, inside {network}")


def check_proof(progress: SessionProgress) -> None:
    missing = progress.proof_missing
    if missing is not None:
        raise ProbeFailure(
            Reason.ROUTE_MISMATCH,
            f"response lacks the proof header {missing!r}: the expected route was not crossed",
        )


def _no_local_route(address: str) -> bool:
    """Whether this host's own routing refuses ``address``: a UDP connect asks the kernel
    for a route and sends nothing."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as route_check:
            route_check.connect((address, 9))
    except OSError as err:
        return err.errno in UNREACHABLE_ERRNOS or err.errno in LOCAL_ERRNOS
    return False


# Failures a vanished local route also produces: an unreachable errno, or silence (a
# socket whose route went away mid-session just stops hearing back).
_LOCALISABLE = frozenset(
    {Reason.UNREACHABLE, Reason.RTT_TIMEOUT, Reason.CONNECT_TIMEOUT, Reason.IO_ERROR}
)


def _literal(host: str) -> tuple[str, ...]:
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return ()


def localise(failure: Classified, progress: SessionProgress, host: str = "") -> Classified:
    """A failure towards a target this very host has no route to is the probe's network.

    The kernel reports a missing local route and a router's ICMP unreachable with the
    same errno, and a route that vanished under an established connection only as
    silence; only asking the routing table tells "my uplink is gone" from "a router on
    the path said no" or "the path went quiet".
    """
    # aiohttp never asks the resolver for an IP literal: then the URL's host is the address.
    addresses = progress.addresses or _literal(host)
    if failure.reason not in _LOCALISABLE or not addresses:
        return failure
    if not all(_no_local_route(address) for address in addresses):
        return failure
    detail = f"{failure.detail}; no route from this host to {', '.join(addresses)}"
    return Classified(Reason.PROBE_NETWORK, detail[:MAX_DETAIL], failure.close_code)
