"""Real faults on the routers and the server, each a context manager: enter = inject,
exit = heal.

Everything is nftables, tc, ip, sysctl or conntrack run inside *our* namespaces, or a
signal to a process we started. This kernel has no netem, so loss is nftables'
``numgen`` and there is no delay fault.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections.abc import Callable, Iterator
from typing import Literal

from tests.kernel.topology import (
    BACKEND_PORT,
    ECHO_PORT,
    IF_A_CLIENT,
    IF_A_SERVER,
    IF_B_CLIENT,
    IF_B_SERVER,
    IF_CLIENT_A,
    IF_CLIENT_B,
    TLS_PORT,
    Topology,
)

Router = Literal["a", "b"]
Fault = Callable[[Topology], contextlib.AbstractContextManager[None]]

_CLIENT_SIDE = {"a": IF_A_CLIENT, "b": IF_B_CLIENT}
_SERVER_SIDE = {"a": IF_A_SERVER, "b": IF_B_SERVER}
ICMP_KINDS = ("host-unreachable", "net-unreachable", "port-unreachable", "admin-prohibited")


def _role(router: Router) -> str:
    return f"router_{router}"


@contextlib.contextmanager
def _table(topo: Topology, role: str, name: str, chains: str) -> Iterator[None]:
    """A table of our own in the router: deleting it heals, whatever else is there."""
    topo.nft(role, f"table inet {name} {{\n{chains}\n}}\n")
    try:
        yield
    finally:
        topo.nft(role, f"delete table inet {name}\n")


def _forward(rules: str) -> str:
    return (
        "  chain forward { type filter hook forward priority filter - 10; policy accept;\n"
        f"    {rules}\n  }}"
    )


def blackhole(router: Router, direction: Literal["both", "to_client"] = "both") -> Fault:
    """Forward nothing (both ways), or nothing from the server towards the client."""

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        match = "" if direction == "both" else f'iifname "{_SERVER_SIDE[router]}" '
        return _table(topo, _role(router), "t3k_blackhole", _forward(f"{match}drop"))

    return fault


def rst_every_flow(router: Router) -> Fault:
    """Answer every non-SYN TCP segment from the client side with a RST (a middlebox
    that kills established flows, new ones included, for as long as it lasts)."""

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        rule = (
            f'iifname "{_CLIENT_SIDE[router]}" tcp flags & (syn | rst) == 0 reject with tcp reset'
        )
        return _table(topo, _role(router), "t3k_rst", _forward(rule))

    return fault


def rst_existing_flows(router: Router) -> Fault:
    """A RST into each flow established *before* the fault, as a firewall fail-over or a
    middlebox flushing its table does; flows opened afterwards pass.

    The flows are read from the router's connection table (router A tracks from the
    start) and matched by their client port.
    """

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        listing = topo.run(role, "conntrack", "-L", "-p", "tcp", "--state", "ESTABLISHED")
        ports = sorted(
            {
                field.split("=", 1)[1]
                for line in listing.stdout.splitlines()
                for field in line.split()[:8]
                if field.startswith("sport=")
            }
        )
        if not ports:
            raise RuntimeError(f"no established flow through {role} to reset")
        rule = (
            f'iifname "{_CLIENT_SIDE[router]}" tcp sport {{ {", ".join(ports)} }}'
            " reject with tcp reset"
        )
        with _table(topo, role, "t3k_rst_existing", _forward(rule)):
            yield

    return fault


def icmp_reject(router: Router, kind: str) -> Fault:
    """The router answers every TCP segment from the client with ICMP ``kind``."""
    if kind not in ICMP_KINDS:
        raise ValueError(f"unknown ICMP kind {kind!r}")

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        rule = f'iifname "{_CLIENT_SIDE[router]}" meta l4proto tcp reject with icmp type {kind}'
        return _table(topo, _role(router), "t3k_icmp", _forward(rule))

    return fault


def random_loss(router: Router, percent: int) -> Fault:
    """Drop ``percent``% of forwarded packets, both ways, at random."""

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        return _table(
            topo, _role(router), "t3k_loss", _forward(f"numgen random mod 100 < {percent} drop")
        )

    return fault


def every_nth_loss(router: Router, nth: int) -> Fault:
    """Drop every ``nth`` server-to-client packet of each server port's flow.

    One counter per port (one rule each), so each flow loses exactly one packet in
    ``nth`` and a retransmission is never the next victim: loss without any outage.
    """

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        rules = "\n    ".join(
            f'iifname "{_SERVER_SIDE[router]}" tcp sport {port} numgen inc mod {nth} == 0 drop'
            for port in (ECHO_PORT, BACKEND_PORT, TLS_PORT)
        )
        return _table(topo, _role(router), "t3k_nth_loss", _forward(rules))

    return fault


def nat_forgets_flows(router: Router = "b", established_timeout: int = 5) -> Fault:
    """The NAT router's connection table loses every TCP flow (as an idle expiry does),
    with ``nf_conntrack_tcp_loose=0`` so a mid-stream packet never re-creates one."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        old_loose = topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_loose", 0)
        old_timeout = topo.sysctl(
            role, "net.netfilter.nf_conntrack_tcp_timeout_established", established_timeout
        )
        try:
            # Exit 1 just means there was nothing to delete.
            topo.run(role, "conntrack", "-D", "-p", "tcp", check=False)
            yield
        finally:
            topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_timeout_established", old_timeout)
            topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_loose", old_loose)

    return fault


def nat_short_timeout(router: Router = "b", heartbeats: float = 2.0) -> Fault:
    """A NAT whose established-flow timeout is short, but ``heartbeats`` heartbeat
    intervals long (whole seconds, at least 1), so a heartbeating flow never idles out."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        timeout = max(1, math.ceil(heartbeats * topo.timings.heartbeat))
        old_loose = topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_loose", 0)
        old_timeout = topo.sysctl(
            role, "net.netfilter.nf_conntrack_tcp_timeout_established", timeout
        )
        try:
            yield
        finally:
            topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_timeout_established", old_timeout)
            topo.sysctl(role, "net.netfilter.nf_conntrack_tcp_loose", old_loose)

    return fault


def pmtu_blackhole(router: Router, mtu: int = 576) -> Fault:
    """A small MTU towards the client and the router's ICMP frag-needed dropped: small
    packets pass, a full-size segment (a TLS server's certificate flight) never does."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        ifname = _CLIENT_SIDE[router]
        chains = (
            "  chain output { type filter hook output priority filter; policy accept;\n"
            "    icmp type destination-unreachable icmp code frag-needed drop\n  }"
        )
        with _table(topo, role, "t3k_pmtu", chains):
            topo.ip(role, "link", "set", ifname, "mtu", str(mtu))
            try:
                yield
            finally:
                topo.ip(role, "link", "set", ifname, "mtu", "1500")

    return fault


def syn_drop(router: Router) -> Fault:
    """Drop connection attempts (SYN without ACK) from the client; established flows pass."""

    def fault(topo: Topology) -> contextlib.AbstractContextManager[None]:
        rule = f'iifname "{_CLIENT_SIDE[router]}" tcp flags & (syn | ack) == syn drop'
        return _table(topo, _role(router), "t3k_syn", _forward(rule))

    return fault


def link_down(router: Router) -> Fault:
    """The router's uplink (towards the server) goes down."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        topo.ip(role, "link", "set", _SERVER_SIDE[router], "down")
        try:
            yield
        finally:
            topo.ip(role, "link", "set", _SERVER_SIDE[router], "up")
            topo.add_routes()

    return fault


def client_offline() -> Fault:
    """The probe's own host loses its network: both of the client's links go down, and
    their routes with them (a container whose network vanished)."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        for ifname in (IF_CLIENT_A, IF_CLIENT_B):
            topo.ip("client", "link", "set", ifname, "down")
        try:
            yield
        finally:
            for ifname in (IF_CLIENT_A, IF_CLIENT_B):
                topo.ip("client", "link", "set", ifname, "up")
            topo.add_routes()

    return fault


def rate_limit(router: Router, rate: str, burst: str = "1600", latency: str = "200ms") -> Fault:
    """A tight token bucket (``tc tbf``) on the router's link towards the client."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        role = _role(router)
        ifname = _CLIENT_SIDE[router]
        topo.run(
            role,
            *("tc", "qdisc", "add", "dev", ifname, "root", "tbf"),
            *("rate", rate, "burst", burst, "latency", latency),
        )
        try:
            yield
        finally:
            topo.run(role, "tc", "qdisc", "del", "dev", ifname, "root")

    return fault


ServerProcess = Literal["echo", "backend", "tls"]


def _process(topo: Topology, which: ServerProcess) -> int:
    process = {"echo": topo.echo, "backend": topo.backend, "tls": topo.tls}[which]
    if process is None or not process.alive():
        raise RuntimeError(f"the {which} process is not running")
    return process.pid


def stop_process(which: ServerProcess) -> Fault:
    """SIGSTOP one of the server's processes (its kernel still accepts connections)."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        pid = _process(topo, which)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    return fault


def kill_process(which: ServerProcess) -> Fault:
    """SIGKILL one of the server's processes; healing starts a new one."""

    @contextlib.contextmanager
    def fault(topo: Topology) -> Iterator[None]:
        os.kill(_process(topo, which), signal.SIGKILL)
        try:
            yield
        finally:
            {"echo": topo.start_echo, "backend": topo.start_backend, "tls": topo.start_tls}[which]()

    return fault
