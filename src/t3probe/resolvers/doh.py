"""DNS over HTTPS (RFC 8484): servers tried in order, answers served stale (RFC 8767).

HTTP/2 or HTTP/1.1, whichever the server agrees to; a server that failed sits out a
back-off, so a dead one does not cost its timeout at every refresh (docs/doh.md).

The CDN leg resolves through public DoH on purpose: split-horizon cluster DNS would
otherwise silently hand it the internal address and collapse the differential. A DoH
outage is not a path failure, so answers are cached for their TTL and served stale
while every server fails; each failure still reaches the failure sink, so it is counted
even when the leg never notices it.

Only A records are queried: every route the probe measures (the CDN edge, the lab's
loopback topology) is reachable over IPv4, and a second AAAA query per resolution
would double the failure surface without changing what the leg measures. A CNAME whose
target the server did not include is followed with further queries to the same server,
as a stub resolver does (bounded by ``MAX_CNAME_DEPTH`` links in all, loops refused).

The HTTP exchange lives in :mod:`t3probe.resolvers.dohclient`, the wire format in
:mod:`t3probe.resolvers.dohwire`, the order of servers in
:mod:`t3probe.resolvers.dohhealth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import dns.rdatatype

from t3probe.clock import Clock
from t3probe.config import DohResolverConfig
from t3probe.reasons import DnsFailure, ProbeFailure, Reason
from t3probe.resolvers.base import DnsFailureSink, Resolution, ServerStateSink
from t3probe.resolvers.dohclient import DohClient, ExchangeError
from t3probe.resolvers.dohhealth import ServerHealth, ServerStatus
from t3probe.resolvers.dohwire import (
    MAX_CNAME_DEPTH,
    Answer,
    DohWireError,
    build_query,
    parse_answer,
)

_MAX_DETAIL = 300
# Room for the URL, the reason and what the server did, several servers within _MAX_DETAIL.
_MAX_SERVER_DETAIL = 200
# Negative answers are answers (RFC 8767 section 4 serves stale only when no answer
# can be had), so they drop the cached entry instead of being papered over; the server
# that gave one is healthy.
_DEFINITIVE = frozenset({DnsFailure.NXDOMAIN, DnsFailure.EMPTY})
DEFAULT_SERVER_BACKOFF_SECONDS = 30.0
DEFAULT_MAX_TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class _Entry:
    addresses: tuple[str, ...]
    expires_at: float


class _ServerFailure(Exception):
    def __init__(self, reason: DnsFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DohResolver:
    def __init__(
        self,
        servers: Sequence[str],
        *,
        on_failure: DnsFailureSink,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        max_stale_seconds: float,
        min_ttl_seconds: float,
        clock: Clock,
        server_backoff_seconds: float = DEFAULT_SERVER_BACKOFF_SECONDS,
        max_ttl_seconds: float = DEFAULT_MAX_TTL_SECONDS,
        on_server_state: ServerStateSink | None = None,
        client: DohClient | None = None,
    ) -> None:
        if not servers:
            raise ValueError("DohResolver needs at least one server")
        self._on_failure = on_failure
        self._timeout = timeout
        self._max_stale = max_stale_seconds
        self._min_ttl = min_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._clock = clock
        self._health = ServerHealth(
            servers, backoff_seconds=server_backoff_seconds, on_change=on_server_state
        )
        # None means the system trust store, still verified.
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._client = client if client is not None else DohClient(context)
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Resolution]] = {}
        self._closed = False

    @classmethod
    def from_config(
        cls,
        cfg: DohResolverConfig,
        on_failure: DnsFailureSink,
        clock: Clock,
        on_server_state: ServerStateSink | None = None,
    ) -> DohResolver:
        # create_default_context always verifies; with a cafile it trusts only that CA.
        cafile = str(cfg.ca_file) if cfg.ca_file is not None else None
        context = ssl.create_default_context(cafile=cafile)
        return cls(
            cfg.servers,
            on_failure=on_failure,
            timeout=cfg.timeout_seconds,
            ssl_context=context,
            max_stale_seconds=cfg.max_stale_seconds,
            min_ttl_seconds=cfg.min_ttl_seconds,
            clock=clock,
            server_backoff_seconds=cfg.server_backoff_seconds,
            max_ttl_seconds=cfg.max_ttl_seconds,
            on_server_state=on_server_state,
        )

    @property
    def servers(self) -> tuple[ServerStatus, ...]:
        """Each server's state, in config order."""
        return self._health.snapshot()

    async def resolve(self, host: str) -> Resolution:
        if self._closed:
            raise RuntimeError("DohResolver is closed")
        if _is_ip_literal(host):
            return Resolution((host,))
        key = host.lower().rstrip(".")
        entry = self._cache.get(key)
        if entry is not None and self._clock.monotonic() < entry.expires_at:
            return Resolution(entry.addresses)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(key), name=f"doh-resolve-{key}")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        # One caller giving up (its leg was cancelled) must not abort the query the
        # other callers of the same host are waiting for.
        return await asyncio.shield(task)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ProbeFailure):
                await task
        await self._client.aclose()

    def _finished(self, key: str, task: asyncio.Task[Resolution]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        # Mark the outcome retrieved: if every waiter was cancelled nobody else will,
        # and asyncio would log a spurious "exception was never retrieved".
        if not task.cancelled():
            task.exception()

    async def _refresh(self, key: str) -> Resolution:
        errors: list[str] = []
        definitive = False
        order = self._health.order(self._clock.monotonic())
        skipped = self._health.count - len(order)
        for server in order:
            try:
                addresses, ttl, version = await self._lookup(server, key)
            except _ServerFailure as failure:
                self._on_failure(failure.reason)
                error = f"{server}: {failure.reason}: {failure.detail}"[:_MAX_SERVER_DETAIL]
                errors.append(error)
                if failure.reason in _DEFINITIVE:
                    definitive = True
                    self._health.answered(server, http_version="")
                else:
                    self._health.failed(server, self._clock.monotonic(), error)
                continue
            self._health.answered(server, version)
            now = self._clock.monotonic()
            self._prune(now)
            # The floor wins if a caller set it above the cap (the config refuses that).
            held = max(min(ttl, self._max_ttl), self._min_ttl)
            self._cache[key] = _Entry(addresses, now + held)
            return Resolution(addresses)
        entry = self._cache.get(key)
        if definitive:
            self._cache.pop(key, None)
        elif entry is not None and self._clock.monotonic() <= entry.expires_at + self._max_stale:
            return Resolution(entry.addresses, stale=True)
        note = f" ({skipped} more server(s) backing off, not asked)" if skipped else ""
        detail = f"doh: no answer for {key}{note}: " + "; ".join(errors)
        raise ProbeFailure(Reason.DNS_FAILED, detail[:_MAX_DETAIL])

    def _prune(self, now: float) -> None:
        # Hosts come from the config, so the cache is small; pruning keeps it so even
        # if a caller resolves many names.
        for key in [k for k, e in self._cache.items() if now > e.expires_at + self._max_stale]:
            del self._cache[key]

    async def _lookup(self, server: str, host: str) -> tuple[tuple[str, ...], float, str]:
        """Addresses for ``host`` from one server, following CNAMEs, within one timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(server, host)
        except TimeoutError as err:
            raise _ServerFailure(
                DnsFailure.TIMEOUT, f"no answer within {self._timeout:g}s"
            ) from err

    async def _follow(self, server: str, host: str) -> tuple[tuple[str, ...], float, str]:
        name = host
        ttl = math.inf
        followed: list[str] = []
        while True:
            answer, version = await self._query(server, name)
            ttl = min(ttl, answer.ttl)
            if answer.addresses:
                return answer.addresses, ttl, version
            assert answer.target is not None  # parse_answer: no addresses means a target
            followed.extend(answer.aliases)
            name = answer.target.lower()
            if name in followed:
                raise _ServerFailure(DnsFailure.MALFORMED, f"CNAME loop at {name}")
            if len(followed) > MAX_CNAME_DEPTH:
                raise _ServerFailure(
                    DnsFailure.MALFORMED, f"CNAME chain for {host} longer than {MAX_CNAME_DEPTH}"
                )

    async def _query(self, server: str, host: str) -> tuple[Answer, str]:
        query_id = secrets.randbelow(0x10000)
        try:
            wire = build_query(host, dns.rdatatype.A, query_id)
        except ValueError as err:
            raise _ServerFailure(DnsFailure.MALFORMED, str(err)) from err
        try:
            exchange = await self._client.exchange(server, wire)
        except ExchangeError as err:
            raise _ServerFailure(err.reason, err.detail) from err
        try:
            answer = parse_answer(exchange.body, host, dns.rdatatype.A, query_id)
        except DohWireError as err:
            raise _ServerFailure(err.reason, err.detail) from err
        return answer, exchange.http_version


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
