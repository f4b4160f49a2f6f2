"""The network under the DoH client: each request leaves in one write.

httpcore2 writes an HTTP/2 request as separate HEADERS, DATA and END_STREAM writes.
knot-resolver 5.6 (Debian 12) assembles a POST body per read from the socket, so when
END_STREAM arrives in a read of its own it sees an empty body and answers 400 (its
``daemon/http.c`` carries a FIXME for this); later requests on the connection then fail
too. curl and browsers hand a whole request to the socket at once, which is what this
backend restores: writes made in one event-loop step are joined and sent together.

The streams also remember what TLS negotiated, so a failed exchange can say whether the
server agreed to HTTP/2, to HTTP/1.1, or to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2

# The ALPN outcome of the latest handshake per "host:port" ("" when none was agreed).
AlpnLog = dict[str, str]


class CoalescingBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, alpn_log: AlpnLog) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._alpn_log = alpn_log
        self.connections_opened = 0

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        self.connections_opened += 1
        return CoalescingStream(stream, self._alpn_log, f"{host}:{port}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.UnsupportedProtocol("DoH servers are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CoalescingStream(httpcore2.AsyncNetworkStream):
    def __init__(self, inner: httpcore2.AsyncNetworkStream, alpn_log: AlpnLog, key: str) -> None:
        self._inner = inner
        self._alpn_log = alpn_log
        self._key = key
        self._pending: list[bytes] = []
        self._flush: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._raise_pending_error()
        if not buffer:
            return
        self._pending.append(buffer)
        if self._flush is None:
            # The task runs once the writer yields, i.e. after the request's last frame.
            self._flush = asyncio.create_task(self._send(timeout), name="doh-write")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._drain()
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        flush, self._flush = self._flush, None
        if flush is not None:
            flush.cancel()
            with contextlib.suppress(BaseException):
                await flush
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        await self._drain()
        try:
            tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except asyncio.CancelledError:
            # A handshake cut off by our deadline (a hung server) would leave the TCP
            # socket open: the backend closes it only on errors, and nothing else holds it.
            await self._inner.aclose()
            raise
        ssl_object = tls.get_extra_info("ssl_object")
        selected = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self._alpn_log[self._key] = selected or ""
        return CoalescingStream(tls, self._alpn_log, self._key)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    async def _send(self, timeout: float | None) -> None:
        try:
            while self._pending:
                data = b"".join(self._pending)
                self._pending.clear()
                await self._inner.write(data, timeout)
        except Exception as err:  # noqa: BLE001 - re-raised by the next read or write
            # That is where httpcore2 expects a broken connection to show.
            self._error = err
        finally:
            self._flush = None

    async def _drain(self) -> None:
        flush = self._flush
        if flush is not None:
            # Shielded: a reader giving up must not cut a request off mid-frame for the
            # other streams sharing this connection.
            await asyncio.shield(flush)
        self._raise_pending_error()

    def _raise_pending_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
