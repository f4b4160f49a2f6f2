"""The echo's pure admission rules: who a connection belongs to, how many each may hold."""

from __future__ import annotations

import ipaddress

import pytest

from t3probe.echo import EchoLimits
from t3probe.echo_clients import (
    Refusal,
    SlotTable,
    client_key,
    forwarded_client,
    parse_networks,
)

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"], "test")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("198.51.100.9", ["203.0.113.1"], "198.51.100.9"),
        ("198.51.100.9", [], "198.51.100.9"),
        # A trusted proxy: the right-most hop outside the trusted networks.
        ("10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.5", ["203.0.113.1, 10.1.2.3"], "203.0.113.1"),
        # Left of the first untrusted hop is whatever the client wrote: not believed.
        ("10.0.0.5", ["192.0.2.66, 203.0.113.1"], "203.0.113.1"),
        # Several headers are one list, in order.
        ("10.0.0.5", ["192.0.2.66", "203.0.113.1"], "203.0.113.1"),
        # A trusted proxy without the header, or only trusted hops: the left-most one.
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        # Garbage stops the walk at the last trusted hop: it invents no client.
        ("10.0.0.5", ["203.0.113.1, not-an-ip"], "10.0.0.5"),
        ("10.0.0.5", ["203.0.113.1, not-an-ip, 10.1.1.1"], "10.1.1.1"),
        # The forms proxies write: ports, brackets, IPv6, IPv4-mapped peers.
        ("10.0.0.5", ["203.0.113.1:4711"], "203.0.113.1"),
        ("10.0.0.5", ["[2001:db8::7]:4711"], "2001:db8::7"),
        ("::ffff:10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
        ("2001:db8:ffff::1", ["2001:db8:1::9"], "2001:db8:1::9"),
        (None, ["203.0.113.1"], None),
    ],
)
def test_forwarded_client(peer: str | None, forwarded_for: list[str], expected: str | None) -> None:
    found = forwarded_client(peer, forwarded_for, TRUSTED)
    assert found == (None if expected is None else ipaddress.ip_address(expected))


def test_forwarded_client_trusts_nothing_by_default() -> None:
    assert forwarded_client("127.0.0.1", ["203.0.113.1"], ()) == ipaddress.ip_address("127.0.0.1")


def test_forwarded_client_bounds_the_walk() -> None:
    chain = ", ".join(["10.0.0.1"] * 10_000)
    assert forwarded_client("10.0.0.5", [chain], TRUSTED) == ipaddress.ip_address("10.0.0.1")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.1", "203.0.113.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::2", "2001:db8:1:2::/64"),
        (None, "unknown"),
    ],
)
def test_client_key_groups_ipv6_by_64(address: str | None, key: str) -> None:
    assert client_key(None if address is None else ipaddress.ip_address(address)) == key


def test_parse_networks_names_the_field_and_value() -> None:
    assert parse_networks(["127.0.0.1", "10.0.0.0/8"], "f") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    with pytest.raises(ValueError, match=r"--trusted-proxy: '10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/33"], "--trusted-proxy")
    with pytest.raises(ValueError, match="at most 256"):
        parse_networks([f"10.0.{i // 256}.{i % 256}" for i in range(257)], "f")


def test_slot_table_caps_each_client_and_keeps_a_reserve() -> None:
    slots = SlotTable(total=8, per_client=3, reserved=2, reserve_max_per_client=1)
    assert [slots.admit("a") for _ in range(4)] == [None, None, None, Refusal.CLIENT_LIMIT]
    assert [slots.admit("b") for _ in range(3)] == [None, None, None]
    # Six held: the last two slots are the reserve, for clients holding fewer than one.
    assert slots.admit("a") is Refusal.CLIENT_LIMIT
    assert slots.admit("c") is None
    assert slots.admit("c") is Refusal.FULL
    assert slots.admit("d") is None
    assert slots.admit("e") is Refusal.FULL
    assert len(slots) == 8
    slots.release("b")
    assert slots.admit("b") is Refusal.FULL  # back into the reserve: b is not small
    assert slots.admit("e") is None
    for key in ["a", "a", "a", "b", "b", "c", "d", "e"]:
        slots.release(key)
    assert len(slots) == 0
    assert slots.held_by("a") == 0
    with pytest.raises(KeyError):
        slots.release("a")


def test_slot_table_exempt_keys_meet_only_the_total() -> None:
    slots = SlotTable(total=3, per_client=1, reserved=1, reserve_max_per_client=1)
    assert [slots.admit("proxy", exempt=True) for _ in range(4)] == [None, None, None, Refusal.FULL]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_connections_per_client": 0}, "max_connections_per_client"),
        ({"max_connections": 10, "reserved_connections": 10}, "reserved_connections"),
        ({"reserved_connections": -1}, "reserved_connections"),
        ({"reserve_max_per_client": 0}, "reserve_max_per_client"),
        ({"max_pending_connections": 0}, "max_pending_connections"),
        ({"trusted_proxies": ("10.0.0.0/8", "nope")}, r"trusted_proxies: 'nope'"),
        ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies"),
    ],
)
def test_new_limits_validated(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EchoLimits(**limits)  # type: ignore[arg-type]


def test_limit_defaults_follow_max_connections() -> None:
    assert EchoLimits().reserve == 100
    assert EchoLimits().pending_cap == 1000
    assert EchoLimits(max_connections=50).reserve == 5
    assert EchoLimits(max_connections=50).pending_cap == 50
    assert EchoLimits(max_connections=2).reserve == 0
