"""Who a connection to the echo belongs to, and how many connections each may hold.

Pure: addresses in, decisions out; the echo's aiohttp plumbing feeds it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from enum import Enum

__all__ = [
    "IPAddress",
    "IPNetwork",
    "Refusal",
    "SlotTable",
    "TokenBucket",
    "client_key",
    "forwarded_client",
    "parse_networks",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# One IPv6 subscriber routinely gets a whole /64, so counting single IPv6 addresses would
# let one host open as many "clients" as it likes.
IPV6_CLIENT_PREFIX = 64
# A longer X-Forwarded-For than this is not a real proxy chain; the rest is ignored.
MAX_FORWARDED_HOPS = 32
MAX_TRUSTED_NETWORKS = 256


def parse_networks(values: Iterable[str], field: str) -> tuple[IPNetwork, ...]:
    """CIDR strings (or bare addresses) to networks; errors name ``field`` and the value."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"{field}: {value!r} is not an IP network ({err})") from None
    if len(networks) > MAX_TRUSTED_NETWORKS:
        raise ValueError(f"{field}: at most {MAX_TRUSTED_NETWORKS} networks, got {len(networks)}")
    return tuple(networks)


def _in(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return address


def _parse_address(text: str) -> IPAddress | None:
    """An address as peers and proxies write it: bare, ``[v6]:port`` or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return _unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client a request counts against: the TCP peer, or, when that peer is a
    trusted proxy, the right-most X-Forwarded-For hop that is not a trusted proxy.

    Every proxy appends the address it received the request from, so only the entries
    our own proxies wrote can be believed: walking from the right, the first address
    outside ``trusted`` is the client. Anything left of it is whatever the client chose
    to send. An unparseable hop ends the walk at the last trusted one, which keeps a
    forged value from inventing a client of its own.
    """
    address = _parse_address(peer) if peer is not None else None
    if address is None or not _in(address, trusted):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
        hop_address = _parse_address(hop)
        if hop_address is None:
            return address
        address = hop_address
        if not _in(address, trusted):
            return address
    return address


def client_key(address: IPAddress | None) -> str:
    """What connections are counted under: an IPv4 address or an IPv6 /64."""
    if address is None:
        return "unknown"  # a Unix socket or a transport without a peer: one shared client
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


class Refusal(Enum):
    CLIENT_LIMIT = "this client holds too many connections"
    FULL = "no free connection slot"


class SlotTable:
    """Connections held per client key, under a total cap, a per-client cap and a reserve.

    The last ``reserved`` slots of ``total`` go only to clients holding fewer than
    ``reserve_max_per_client``: a few clients holding many connections each cannot take
    the slots a probe starting up needs.
    """

    def __init__(
        self, *, total: int, per_client: int, reserved: int, reserve_max_per_client: int
    ) -> None:
        self.total = total
        self.per_client = per_client
        self.reserved = reserved
        self.reserve_max_per_client = reserve_max_per_client
        self._held: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def held_by(self, key: str) -> int:
        return self._held.get(key, 0)

    def admit(self, key: str, *, exempt: bool = False) -> Refusal | None:
        """Take a slot for ``key``, or say why not (and take nothing).

        ``exempt`` keys (a trusted proxy speaking for many clients) are held only to the
        total cap.
        """
        held = self._held.get(key, 0)
        if not exempt and held >= self.per_client:
            return Refusal.CLIENT_LIMIT
        if self._count >= self.total:
            return Refusal.FULL
        in_reserve = self._count >= self.total - self.reserved
        if in_reserve and not exempt and held >= self.reserve_max_per_client:
            return Refusal.FULL
        self._held[key] = held + 1
        self._count += 1
        return None

    def release(self, key: str) -> None:
        held = self._held.get(key, 0)
        if held <= 0:
            raise KeyError(f"{key!r} holds no slot")
        if held == 1:
            del self._held[key]  # the table stays as small as the set of current clients
        else:
            self._held[key] = held - 1
        self._count -= 1


class TokenBucket:
    """Classic token bucket; the caller passes the time so it stays pure and testable."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
