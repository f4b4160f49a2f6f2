"""Refuse connections to anything but loopback: for tests, benchmarks and the lab.

Installed by the test suite's conftest and, when ``T3PROBE_LOOPBACK_ONLY=1`` is set, by
the CLI, so a probe started by a test can never reach a real address either.

One extension, for the kernel-fault tests (``tests/kernel/``), which run the probe and
its peers inside network namespaces the tests create: ``T3PROBE_ALLOWED_NETWORKS``
(comma-separated CIDRs, e.g. ``198.18.0.0/15``) *adds* ranges to loopback. The guard
itself stays installed: nothing outside loopback and those ranges can be reached, and
names are still never resolved through the machine's DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

_installed = False
_allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

ALLOWED_NETWORKS_VARIABLE = "T3PROBE_ALLOWED_NETWORKS"


class NonLoopbackConnection(RuntimeError):
    """Raised instead of connecting to an address outside 127.0.0.0/8, ::1 and the
    networks explicitly allowed."""


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"198.18.0.0/15, 198.19.1.0/24"`` -> networks; ``ValueError`` naming a bad entry."""
    networks = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as err:
            raise ValueError(
                f"{ALLOWED_NETWORKS_VARIABLE}: {entry!r} is not a network: {err}"
            ) from None
    return tuple(networks)


def _target_ip(address: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(address, tuple) or not address:
        return None
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return None


def is_loopback_target(address: Any) -> bool:
    if isinstance(address, str | bytes):
        return True  # AF_UNIX paths never leave the machine
    if not isinstance(address, tuple) or not address:
        return False
    ip = _target_ip(address)
    if ip is None:
        return str(address[0]) == "localhost"
    return ip.is_loopback


def is_allowed_target(address: Any) -> bool:
    """Loopback, or inside one of the networks :func:`install` was given."""
    if is_loopback_target(address):
        return True
    ip = _target_ip(address)
    return ip is not None and any(ip in network for network in _allowed)


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
    if not is_allowed_target(address):
        extra = f" or {', '.join(map(str, _allowed))}" if _allowed else ""
        raise NonLoopbackConnection(
            f"refusing to connect to non-loopback address {address!r} (allowed: loopback{extra})"
        )


def allow_networks(
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network | str],
) -> None:
    """Add ranges to what an installed (or later installed) guard lets through."""
    global _allowed
    added = tuple(ipaddress.ip_network(network) for network in networks)
    _allowed = tuple(dict.fromkeys(_allowed + added))


def allowed_networks() -> Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return _allowed


def install(
    extra_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network | str] = (),
) -> None:
    """Patch socket connect/sendto so every outgoing target must be loopback (or in
    ``extra_networks``, for processes inside test-made network namespaces)."""
    global _installed
    allow_networks(extra_networks)
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


def install_from_environment(environ: dict[str, str] | Any) -> bool:
    """The CLI's rule: ``T3PROBE_LOOPBACK_ONLY=1`` installs the guard, and
    ``T3PROBE_ALLOWED_NETWORKS`` (only honoured together with it) adds ranges.

    Returns whether the guard was installed; a malformed network list raises
    ``ValueError`` rather than silently guarding less or more than asked.
    """
    extra_text = environ.get(ALLOWED_NETWORKS_VARIABLE, "")
    if environ.get("T3PROBE_LOOPBACK_ONLY") != "1":
        if extra_text.strip():
            # Widening a guard that is not there would be a no-op that looks like safety.
            raise ValueError(
                f"{ALLOWED_NETWORKS_VARIABLE} only widens the loopback guard;"
                " set T3PROBE_LOOPBACK_ONLY=1 with it"
            )
        return False
    install(parse_networks(extra_text))
    return True
