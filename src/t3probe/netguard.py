"""Refuse connections to anything but loopback: for tests, benchmarks and the lab.

Installed by the test suite's conftest and, when ``T3PROBE_LOOPBACK_ONLY=1`` is set, by
the CLI, so a probe started by a test can never reach a real address either.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_installed = False


class NonLoopbackConnection(RuntimeError):
    """Raised instead of connecting to an address outside 127.0.0.0/8 and ::1."""


def is_loopback_target(address: Any) -> bool:
    if isinstance(address, str | bytes):
        return True  # AF_UNIX paths never leave the machine
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) == "localhost"


def _is_local_name(host: Any) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text == "localhost":
        return True
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def _check(address: Any) -> None:
    if not is_loopback_target(address):
        raise NonLoopbackConnection(f"refusing to connect to non-loopback address {address!r}")


def install() -> None:
    """Patch socket connect/sendto so every outgoing target must be loopback."""
    global _installed
    if _installed:
        return
    _installed = True
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_sendto = socket.socket.sendto

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check(address)
        original_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check(address)
        return original_connect_ex(self, address)

    def guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _check(args[-1])
        return original_sendto(self, data, *args)

    original_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # libc would ask the machine's DNS servers, which are not loopback.
        if host is not None and not _is_local_name(host):
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: not resolving {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = guarded_getaddrinfo
    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.socket.sendto = guarded_sendto  # type: ignore[method-assign,assignment]
