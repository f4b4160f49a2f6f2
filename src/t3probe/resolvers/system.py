"""The operating system's resolver (getaddrinfo), as any client on the host would use."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from t3probe.reasons import DnsFailure, ProbeFailure, Reason
from t3probe.resolvers.base import DnsFailureSink, Resolution

AddrInfo = list[tuple[Any, ...]]


def _getaddrinfo_in_daemon_thread(host: str) -> asyncio.Future[AddrInfo]:
    """getaddrinfo cannot be cancelled; a daemon thread keeps a hung lookup from
    holding up shutdown the way the loop's default executor would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[AddrInfo] = loop.create_future()

    def settle(result: AddrInfo | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])

    def lookup() -> None:
        try:
            result = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting coroutine
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, None, err)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, list(result), None)

    threading.Thread(target=lookup, name=f"getaddrinfo-{host}"[:60], daemon=True).start()
    return future


class SystemResolver:
    def __init__(self, on_failure: DnsFailureSink, timeout: float) -> None:
        self._on_failure = on_failure
        self._timeout = timeout

    async def resolve(self, host: str) -> Resolution:
        try:
            async with asyncio.timeout(self._timeout):
                infos = await _getaddrinfo_in_daemon_thread(host)
        except TimeoutError as err:
            self._on_failure(DnsFailure.TIMEOUT)
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver timed out for {host}") from err
        except socket.gaierror as err:
            self._on_failure(
                DnsFailure.NXDOMAIN if err.errno == socket.EAI_NONAME else DnsFailure.SERVFAIL
            )
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver: {host}: {err}") from err
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            self._on_failure(DnsFailure.EMPTY)
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver: no address for {host}")
        return Resolution(addresses)

    async def close(self) -> None:
        return None
