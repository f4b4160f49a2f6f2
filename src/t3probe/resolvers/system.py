"""The operating system's resolver (getaddrinfo), as any client on the host would use."""

from __future__ import annotations

import asyncio
import socket

from t3probe.reasons import ProbeFailure, Reason
from t3probe.resolvers.base import DnsFailureSink, Resolution


class SystemResolver:
    def __init__(self, on_failure: DnsFailureSink, timeout: float) -> None:
        self._on_failure = on_failure
        self._timeout = timeout

    async def resolve(self, host: str) -> Resolution:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except TimeoutError as err:
            self._on_failure("timeout")
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver timed out for {host}") from err
        except socket.gaierror as err:
            self._on_failure("nxdomain" if err.errno == socket.EAI_NONAME else "servfail")
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver: {host}: {err}") from err
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            self._on_failure("empty")
            raise ProbeFailure(Reason.DNS_FAILED, f"system resolver: no address for {host}")
        return Resolution(addresses)

    async def close(self) -> None:
        return None
