"""DNS over HTTPS (RFC 8484): servers tried in order, answers served stale (RFC 8767).

The CDN leg resolves through public DoH on purpose: split-horizon cluster DNS would
otherwise silently hand it the internal address and collapse the differential. A DoH
outage is not a path failure, so answers are cached for their TTL and served stale
while every server fails; each failure still reaches the failure sink, so it is counted
even when the leg never notices it.

Only A records are queried: every route the probe measures (the CDN edge, the lab's
loopback topology) is reachable over IPv4, and a second AAAA query per resolution
would double the failure surface without changing what the leg measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import dns.rdatatype

from t3probe.clock import Clock
from t3probe.config import DohResolverConfig
from t3probe.reasons import DnsFailure, ProbeFailure, Reason
from t3probe.resolvers.base import DnsFailureSink, Resolution
from t3probe.resolvers.dohwire import MAX_WIRE_BYTES, DohWireError, build_query, parse_answer

DNS_MESSAGE = "application/dns-message"
_MAX_DETAIL = 300
_MAX_SERVER_DETAIL = 120
# Negative answers are answers (RFC 8767 section 4 serves stale only when no answer
# can be had), so they drop the cached entry instead of being papered over.
_DEFINITIVE = frozenset({DnsFailure.NXDOMAIN, DnsFailure.EMPTY})


@dataclass(frozen=True)
class _Entry:
    addresses: tuple[str, ...]
    expires_at: float


class _ServerFailure(Exception):
    def __init__(self, reason: DnsFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _default_session() -> aiohttp.ClientSession:
    # Our own deadline wraps each exchange, so aiohttp's default 5-minute total is off.
    # No decompression: a compressed body could expand far past the bounded read, and
    # trust_env stays False so proxy variables cannot reroute DNS traffic.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        trust_env=False,
    )


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
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        if not servers:
            raise ValueError("DohResolver needs at least one server")
        self._servers = tuple(servers)
        self._on_failure = on_failure
        self._timeout = timeout
        # None means the system trust store, still verified: aiohttp's ssl=True.
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_stale = max_stale_seconds
        self._min_ttl = min_ttl_seconds
        self._clock = clock
        self._session_factory = session_factory or _default_session
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Resolution]] = {}
        self._closed = False

    @classmethod
    def from_config(
        cls, cfg: DohResolverConfig, on_failure: DnsFailureSink, clock: Clock
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
        )

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
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        for server in self._servers:
            try:
                addresses, ttl = await self._query(server, key)
            except _ServerFailure as failure:
                self._on_failure(failure.reason)
                errors.append(f"{server}: {failure.reason}: {failure.detail}"[:_MAX_SERVER_DETAIL])
                definitive = definitive or failure.reason in _DEFINITIVE
                continue
            now = self._clock.monotonic()
            self._prune(now)
            self._cache[key] = _Entry(addresses, now + max(ttl, self._min_ttl))
            return Resolution(addresses)
        entry = self._cache.get(key)
        if definitive:
            self._cache.pop(key, None)
        elif entry is not None and self._clock.monotonic() <= entry.expires_at + self._max_stale:
            return Resolution(entry.addresses, stale=True)
        detail = f"doh: no answer for {key}: " + "; ".join(errors)
        raise ProbeFailure(Reason.DNS_FAILED, detail[:_MAX_DETAIL])

    def _prune(self, now: float) -> None:
        # Hosts come from the config, so the cache is small; pruning keeps it so even
        # if a caller resolves many names.
        for key in [k for k, e in self._cache.items() if now > e.expires_at + self._max_stale]:
            del self._cache[key]

    async def _query(self, server: str, host: str) -> tuple[tuple[str, ...], float]:
        query_id = secrets.randbelow(0x10000)
        try:
            wire = build_query(host, dns.rdatatype.A, query_id)
        except ValueError as err:
            raise _ServerFailure(DnsFailure.MALFORMED, str(err)) from err
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._exchange(server, wire)
        except TimeoutError as err:
            raise _ServerFailure(
                DnsFailure.TIMEOUT, f"no answer within {self._timeout:g}s"
            ) from err
        except aiohttp.ClientSSLError as err:
            raise _ServerFailure(DnsFailure.TLS_ERROR, _describe(err)) from err
        except ssl.SSLError as err:
            raise _ServerFailure(DnsFailure.TLS_ERROR, _describe(err)) from err
        except (aiohttp.ClientError, OSError) as err:
            # Refused, reset, or the connection dropped mid-answer: the server was not
            # reachable as an HTTP peer.
            raise _ServerFailure(DnsFailure.CONNECT_ERROR, _describe(err)) from err
        try:
            answer = parse_answer(body, host, dns.rdatatype.A, query_id)
        except DohWireError as err:
            raise _ServerFailure(err.reason, err.detail) from err
        return answer.addresses, answer.ttl

    async def _exchange(self, server: str, wire: bytes) -> bytes:
        session = self._get_session()
        headers = {"Content-Type": DNS_MESSAGE, "Accept": DNS_MESSAGE}
        async with session.post(
            server, data=wire, headers=headers, ssl=self._ssl, allow_redirects=False
        ) as response:
            if response.status != 200:
                raise _ServerFailure(DnsFailure.HTTP_ERROR, f"HTTP {response.status}")
            if response.content_type != DNS_MESSAGE:
                kind = response.content_type[:40]
                raise _ServerFailure(DnsFailure.HTTP_ERROR, f"content-type {kind!r}")
            if response.content_length is not None and response.content_length > MAX_WIRE_BYTES:
                raise _ServerFailure(
                    DnsFailure.MALFORMED, f"answer of {response.content_length} bytes"
                )
            return await _read_bounded(response.content, MAX_WIRE_BYTES)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await stream.read(limit + 1 - total):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _ServerFailure(DnsFailure.MALFORMED, f"answer exceeds {limit} bytes")
    return b"".join(chunks)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:_MAX_SERVER_DETAIL]
