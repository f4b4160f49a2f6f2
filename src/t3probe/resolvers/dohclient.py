"""One DoH exchange (RFC 8484): POST a DNS message, read a bounded answer, say what broke.

HTTP/2 and HTTP/1.1 are both offered by ALPN, so servers that speak only HTTP/2
(unbound, knot-resolver) and those that speak both (dnsdist, public resolvers) work.
httpcore2 is used directly rather than through httpx2 or dnspython's ``https()``: it
keeps connections open between lookups, streams the body so the read stays bounded, never
reads proxy variables from the environment (DNS traffic cannot be rerouted), and lets the
network backend be replaced (see :mod:`t3probe.resolvers.dohtransport`). The reasons are
in docs/doh.md.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore2

from t3probe.reasons import DnsFailure
from t3probe.resolvers.dohtransport import AlpnLog, CoalescingBackend
from t3probe.resolvers.dohwire import MAX_WIRE_BYTES

DNS_MESSAGE = "application/dns-message"
MAX_DETAIL = 160
# Much longer risks a connection a NAT silently forgot; servers close idle connections
# sooner anyway (knot-resolver after 10 s, unbound after 30 s), which costs one retry.
KEEPALIVE_SECONDS = 60.0
# A few servers per leg, each multiplexed (HTTP/2) or one request at a time (HTTP/1.1).
MAX_CONNECTIONS = 32
# OpenSSL's names for the alert a server sends when it shares no ALPN protocol with us.
_NO_ALPN = ("NO_APPLICATION_PROTOCOL", "no application protocol")


class ExchangeError(Exception):
    """The server gave no usable HTTP answer; ``reason`` is a metric label."""

    def __init__(self, reason: DnsFailure, detail: str, *, dropped: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]
        # The connection broke under the request (closed, reset, GOAWAY), not the answer.
        self.dropped = dropped


@dataclass(frozen=True)
class Exchange:
    body: bytes
    http_version: str


class DohClient:
    """A connection pool to the DoH servers of one resolver.

    ``http2=False`` offers only HTTP/1.1, as the aiohttp client before it did; tests use it
    to show what a server that speaks only HTTP/2 does to such a client.
    """

    def __init__(self, ssl_context: ssl.SSLContext, *, http2: bool = True) -> None:
        self._offered = "h2, http/1.1" if http2 else "http/1.1"
        self._alpn: AlpnLog = {}
        self._backend = CoalescingBackend(self._alpn)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            http1=True,
            http2=http2,
            max_connections=MAX_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_SECONDS,
            retries=0,
            network_backend=self._backend,
        )

    @property
    def connections_opened(self) -> int:
        return self._backend.connections_opened

    async def exchange(self, server: str, wire: bytes) -> Exchange:
        opened = self.connections_opened
        try:
            return await self._attempt(server, wire)
        except ExchangeError as err:
            if not err.dropped or self.connections_opened != opened:
                raise
        # The request went out on a connection opened earlier, which broke under it: the
        # server closed it while idle. HTTP/2 cannot see that before use, and a DNS query
        # is idempotent, so it is asked once more, on a fresh connection.
        return await self._attempt(server, wire)

    async def _attempt(self, server: str, wire: bytes) -> Exchange:
        headers = [
            (b"Content-Type", DNS_MESSAGE.encode()),
            (b"Accept", DNS_MESSAGE.encode()),
            (b"Content-Length", str(len(wire)).encode()),
        ]
        try:
            async with self._pool.stream("POST", server, headers=headers, content=wire) as response:
                _check_head(response)
                body = await _read_bounded(response, MAX_WIRE_BYTES)
                version = response.extensions.get("http_version", b"")
                return Exchange(body, version.decode("ascii", "replace"))
        except ExchangeError:
            raise
        except (httpcore2.ConnectError, httpcore2.ConnectTimeout, ssl.SSLError) as err:
            raise _connect_failure(err, self._offered) from err
        except (
            httpcore2.ProtocolError,
            httpcore2.NetworkError,
            httpcore2.TimeoutException,
            httpcore2.UnsupportedProtocol,
            OSError,
        ) as err:
            raise _exchange_failure(err, self._negotiated(server)) from err

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _negotiated(self, server: str) -> str | None:
        parts = urlsplit(server)
        return self._alpn.get(f"{parts.hostname}:{parts.port or 443}")


def _check_head(response: httpcore2.Response) -> None:
    if response.status != 200:
        raise ExchangeError(DnsFailure.HTTP_ERROR, f"HTTP {response.status}")
    content_type = _header(response, b"content-type")
    kind = content_type.split(";")[0].strip().lower()
    if kind != DNS_MESSAGE:
        raise ExchangeError(DnsFailure.HTTP_ERROR, f"content-type {content_type[:40]!r}")
    length = _header(response, b"content-length")
    if length.isdigit() and int(length) > MAX_WIRE_BYTES:
        raise ExchangeError(DnsFailure.MALFORMED, f"answer of {length} bytes")


def _header(response: httpcore2.Response, name: bytes) -> str:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def _read_bounded(response: httpcore2.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_stream():
        total += len(chunk)
        if total > limit:
            raise ExchangeError(DnsFailure.MALFORMED, f"answer exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _causes(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _connect_failure(err: BaseException, offered: str) -> ExchangeError:
    """Before any HTTP: refused, unreachable, or TLS said no (certificate or ALPN)."""
    for cause in _causes(err):
        if isinstance(cause, ssl.SSLError) and any(s in str(cause) for s in _NO_ALPN):
            return ExchangeError(
                DnsFailure.PROTOCOL_ERROR,
                f"no ALPN agreement (offered {offered}): {_describe(cause)}",
            )
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return ExchangeError(DnsFailure.TLS_ERROR, _describe(cause))
    if isinstance(err, httpcore2.ConnectTimeout):
        return ExchangeError(DnsFailure.TIMEOUT, _describe(err))
    return ExchangeError(DnsFailure.CONNECT_ERROR, _describe(_causes(err)[-1]))


def _exchange_failure(err: BaseException, negotiated: str | None) -> ExchangeError:
    if isinstance(err, httpcore2.ProtocolError):
        # Without ALPN agreement both sides fall back to their own default: ours is
        # HTTP/1.1, and a server that speaks only HTTP/2 answers it with binary frames.
        spoke = {
            None: "",
            "": "no ALPN, spoke HTTP/1.1 (server HTTP/2 only?): ",
            "h2": "ALPN h2: ",
            "http/1.1": "ALPN http/1.1, not kept to by the server: ",
        }
        hint = spoke.get(negotiated, f"ALPN {negotiated}: ")
        dropped = isinstance(err, httpcore2.RemoteProtocolError)
        detail = f"{hint}{_describe(err)}"
        return ExchangeError(DnsFailure.PROTOCOL_ERROR, detail, dropped=dropped)
    if isinstance(err, httpcore2.TimeoutException):
        return ExchangeError(DnsFailure.TIMEOUT, _describe(err))
    # Reset or closed mid-answer: the server was not reachable as an HTTP peer.
    dropped = isinstance(err, httpcore2.NetworkError | OSError)
    return ExchangeError(DnsFailure.CONNECT_ERROR, _describe(err), dropped=dropped)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:MAX_DETAIL]
