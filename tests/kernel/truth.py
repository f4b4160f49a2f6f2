"""The truth table: for each real fault, what a correct probe reports.

One row per fault. Every expectation is the *correct* behaviour, reasoned from what the
kernel does (not copied from a run), and every row runs as an asserted test: there is no
way to mark a row as expected to fail.

Legs and their segments (see :mod:`tests.kernel.topology`)::

    ws_a   [router_a, server]       ws_b   [router_b, server]
    tls_a  [router_a, tls_server]   tls_b  [router_b, tls_server]
    http_a [router_a, backend]

A leg that a row does not name must not drop at all while that row runs: it does not
cross the faulted router or process.

Times are seconds at ``T3PROBE_TEST_TIME_UNIT=1`` and scale with it, like the probe's
timings (heartbeat 0.5 s, watchdog = connect timeout 2 s, attribution window 3 s,
backoff 0.2-1 s, verdict refreshed every 0.5 s). ``detect_within`` bounds the fault →
every required leg's first drop and → the expected verdict; ``recover_within`` bounds
heal → every leg up again (the verdict is then allowed the attribution window more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.kernel import faults
from tests.kernel.faults import Fault

# Probe timings at unit 1 (the topology scales the same numbers).
HEARTBEAT = 0.5
WATCHDOG = 2.0
CONNECT_TIMEOUT = WATCHDOG
WINDOW = 3.0
BACKOFF_MAX = 1.0
VERDICT_REFRESH = 0.5
MARGIN = 1.0

# Silence on an established leg: its watchdog runs out within a heartbeat of the fault.
TIMEOUT_DETECT = WATCHDOG + HEARTBEAT + MARGIN
# Something the kernel tells the socket at once (RST, FIN): the next read or heartbeat.
IMMEDIATE_DETECT = HEARTBEAT + MARGIN
# A fault in place before the legs start: the connect attempt's own timeout.
CONNECT_DETECT = CONNECT_TIMEOUT + MARGIN
# After healing, an attempt already under way may need its full connect timeout, then
# one backoff step.
RECOVER = CONNECT_TIMEOUT + BACKOFF_MAX + MARGIN

A_LEGS = ("ws_a", "tls_a", "http_a")
B_LEGS = ("ws_b", "tls_b")


@dataclass(frozen=True)
class LegExpect:
    """``first``: allowed reasons of the leg's first drop after the fault; ``then``:
    further reasons allowed while it lasts (failed reconnects: events of kind
    ``reconnect_failed``); ``then_required``: at least one of them must show.
    ``required=False``: the leg may also stay up (random loss)."""

    first: tuple[str, ...]
    then: tuple[str, ...] = ()
    required: bool = True
    then_required: bool = False

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.first) | frozenset(self.then)


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    fault: Fault = field(repr=False)
    legs: Mapping[str, LegExpect]
    # (verdict, suspects) held from detection until the heal; None: not asserted (why in
    # notes). ("infra_clean", ()) means the verdict must never leave infra_clean.
    verdict: tuple[str, tuple[str, ...]] | None
    detect_within: float
    recover_within: float = RECOVER
    hold: float = 5.0
    # The fault is in place before the probe starts: times count from the legs' start.
    at_start: bool = False
    # Legs that must show heartbeat round trips above 100 ms while the fault lasts.
    rtt_inflated: tuple[str, ...] = ()
    # The segments the fault lies on: no verdict from the fault to the end of recovery
    # may name another (default: the expected suspects).
    faulted: tuple[str, ...] | None = None
    # Rows whose observations this one cannot be told apart from, from this vantage
    # point, each with why (or what little differs).
    same_as: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""


def _same(legs: tuple[str, ...], expect: LegExpect) -> dict[str, LegExpect]:
    return dict.fromkeys(legs, expect)


_SILENT = LegExpect(first=("rtt_timeout",), then=("connect_timeout",))
_ICMP_UNREACHABLE = LegExpect(first=("rtt_timeout",), then=("unreachable",), then_required=True)

_SAME_BLACKHOLE = (
    "the client only sees answers stop; which direction died is invisible from its side"
)
_SAME_EHOSTUNREACH = "Linux reports both as EHOSTUNREACH"
_SAME_NET_UNREACHABLE = (
    "a router without a route answers net-unreachable itself (rate-limited by the"
    " kernel, so some attempts time out instead)"
)
_SAME_HEAVY_LOSS = (
    "when chance kills all three legs; inflated round trips before the drops are the only hint"
)
_SAME_NAT = (
    "for established flows; only the instant, successful reconnect tells a forgotten"
    " mapping from a blackhole"
)


def may_name(row: Row) -> frozenset[str]:
    """The segments a verdict may name while the row runs."""
    if row.faulted is not None:
        return frozenset(row.faulted)
    return frozenset(row.verdict[1]) if row.verdict is not None else frozenset()


ROWS: tuple[Row, ...] = (
    Row(
        name="blackhole_a",
        title="router A forwards nothing, both ways",
        fault=faults.blackhole("a"),
        legs=_same(A_LEGS, _SILENT),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=5.5,
        same_as={"blackhole_a_to_client": _SAME_BLACKHOLE},
        notes="The kernel retransmits into the void: the watchdog (WebSocket) or the GET"
        " timeout (HTTP) fires, then reconnects time out.",
    ),
    Row(
        name="blackhole_a_to_client",
        title="router A drops server→client only (one-way blackhole)",
        fault=faults.blackhole("a", "to_client"),
        legs=_same(A_LEGS, _SILENT),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=5.5,
        same_as={"blackhole_a": _SAME_BLACKHOLE},
        notes="Indistinguishable from the two-way blackhole (and from 100% one-way loss):"
        " the probe only sees answers stop; the server's side of the story is not visible"
        " from one vantage point.",
    ),
    Row(
        name="blackhole_b",
        title="router B (NAT) forwards nothing, both ways",
        fault=faults.blackhole("b"),
        legs=_same(B_LEGS, _SILENT),
        verdict=("suspect", ("router_b",)),
        detect_within=TIMEOUT_DETECT,
        hold=5.5,
    ),
    Row(
        name="rst_every_flow_a",
        title="router A answers every non-SYN segment from the client with a TCP RST",
        fault=faults.rst_every_flow("a"),
        legs=_same(A_LEGS, LegExpect(first=("reset",))),
        verdict=("suspect", ("router_a",)),
        detect_within=IMMEDIATE_DETECT,
        hold=3.0,
        notes="Reconnects complete the TCP handshake and are reset on the first segment"
        " after it, so the legs stay down with the same reason (counted once).",
    ),
    Row(
        name="rst_existing_flows_a",
        title="router A resets each flow established before the fault (fail-over)",
        fault=faults.rst_existing_flows("a"),
        legs=_same(A_LEGS, LegExpect(first=("reset",))),
        verdict=("suspect", ("router_a",)),
        detect_within=IMMEDIATE_DETECT,
        # The legs reconnect at once; the verdict holds for the attribution window only.
        hold=2.0,
        notes="New flows pass, so every leg is back within one backoff step; the verdict"
        " convicts router A for the attribution window.",
    ),
    Row(
        name="icmp_host_unreachable_a",
        title="router A answers TCP from the client with ICMP host-unreachable",
        fault=faults.icmp_reject("a", "host-unreachable"),
        legs=_same(A_LEGS, _ICMP_UNREACHABLE),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        same_as={"icmp_admin_prohibited_a": _SAME_EHOSTUNREACH},
        notes="On an established socket Linux keeps ICMP unreachables as soft errors"
        " (RFC 1122): the leg sees silence first (rtt_timeout); the reconnect's SYN fails"
        " at once with EHOSTUNREACH.",
    ),
    Row(
        name="icmp_net_unreachable_a",
        title="router A answers TCP from the client with ICMP net-unreachable",
        fault=faults.icmp_reject("a", "net-unreachable"),
        legs=_same(A_LEGS, _ICMP_UNREACHABLE),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        same_as={"link_down_a": _SAME_NET_UNREACHABLE},
        notes="ENETUNREACH arriving by ICMP from a router is a path fault (unreachable),"
        " unlike a local ENETUNREACH (probe_network).",
    ),
    Row(
        name="icmp_admin_prohibited_a",
        title="router A answers TCP from the client with ICMP admin-prohibited",
        fault=faults.icmp_reject("a", "admin-prohibited"),
        legs=_same(A_LEGS, _ICMP_UNREACHABLE),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        same_as={"icmp_host_unreachable_a": _SAME_EHOSTUNREACH},
        notes="Linux maps admin-prohibited to EHOSTUNREACH too: the probe cannot tell a"
        " filtering router from an unreachable host.",
    ),
    Row(
        name="icmp_port_unreachable_a",
        title="router A answers TCP from the client with ICMP port-unreachable",
        fault=faults.icmp_reject("a", "port-unreachable"),
        legs=_same(A_LEGS, LegExpect(first=("rtt_timeout",), then=("connect_refused",))),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        notes="For TCP the kernel turns port-unreachable into ECONNREFUSED: a reconnect"
        " looks like a closed port on the server; only the healthy router-B legs"
        " localise it to router A.",
    ),
    Row(
        name="loss_random_a",
        title="router A drops 30% of packets at random, both ways",
        fault=faults.random_loss("a", 30),
        legs=_same(A_LEGS, LegExpect(first=_SILENT.first, then=_SILENT.then, required=False)),
        verdict=None,
        detect_within=TIMEOUT_DETECT,
        hold=5.0,
        rtt_inflated=A_LEGS,
        same_as={"blackhole_a": _SAME_HEAVY_LOSS},
        notes="Retransmissions (RTO >= 200 ms) inflate round trips; a leg drops only when"
        " the same segment is lost several times in a row, which is chance. The verdict"
        " is not asserted: it depends on which legs chance kills (all three: router A,"
        " like a blackhole; http_a alone while ws_a and tls_a stay up, slowly: backend)."
        " Tried at 50%: the WebSocket legs mostly ride out the loss, so the drops stay too"
        " sparse for flap memory and a slow-but-up leg still clears router A. Telling that"
        " apart needs the round trips themselves (degradation, issue #15).",
    ),
    Row(
        name="loss_every_4th_a",
        title="router A drops every 4th server→client packet of each flow",
        fault=faults.every_nth_loss("a", 4),
        legs={},
        verdict=None,
        faulted=("router_a", "backend"),
        detect_within=TIMEOUT_DETECT,
        hold=5.0,
        rtt_inflated=A_LEGS,
        notes="Deterministic loss: a retransmission is never the next victim, so every"
        " lost segment costs one RTO (>= 200 ms) and nothing drops. Loss shows as RTT"
        " only, and on some flows at a time: the verdict reads degraded router_a while"
        " the A legs are slow together, but the legs' slow spells need not overlap, and"
        " once the WebSocket legs' slowness is forgotten a still-slow http_a alone reads"
        " degraded backend for a moment (a known limit of per-leg slowness from one"
        " vantage). The verdict is not asserted; no verdict may name anything off"
        " http_a's route, and nothing may drop.",
    ),
    Row(
        name="nat_forgets_flows_b",
        title="NAT router B forgets its TCP flows (tcp_loose=0, short timeout, table flushed)",
        fault=faults.nat_forgets_flows("b"),
        legs=_same(B_LEGS, LegExpect(first=("rtt_timeout",))),
        verdict=("suspect", ("router_b",)),
        detect_within=TIMEOUT_DETECT,
        # The legs come back through new mappings at once; the verdict holds a window.
        hold=3.5,
        same_as={"blackhole_b": _SAME_NAT},
        notes="Mid-stream packets no longer match a mapping and are dropped as invalid:"
        " a blackhole for established flows only, so reconnects succeed immediately.",
    ),
    Row(
        name="nat_short_timeout_b",
        title="NAT router B with an established-flow timeout of two heartbeats (1 s)",
        fault=faults.nat_short_timeout("b", heartbeats=2.0),
        legs={},
        verdict=("infra_clean", ()),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        notes="The heartbeat refreshes the mapping: an idle timeout longer than the"
        " heartbeat never shows (it would bite a real client idling longer). A timeout"
        " at or below the heartbeat does expire flows between heartbeats, and the router-B"
        " legs then drop with rtt_timeout, as in nat_forgets_flows_b.",
    ),
    Row(
        name="pmtu_blackhole_a",
        title="path MTU black hole on router A (MTU 576, ICMP frag-needed dropped)",
        fault=faults.pmtu_blackhole("a"),
        legs={"tls_a": LegExpect(first=("connect_timeout",))},
        verdict=("inconclusive", ()),
        detect_within=CONNECT_DETECT,
        hold=4.0,
        at_start=True,
        notes="Small packets pass: ws_a and http_a connect and heartbeat normally; the TLS"
        " server's certificate flight never arrives, so tls_a's handshake stalls. (Against"
        " an already established TLS leg the fault is invisible until it reconnects, hence"
        " the fault is in place before the legs start.) router_a is exonerated by ws_a and"
        " http_a, tls_server by tls_b: no segment explains tls_a.",
    ),
    Row(
        name="syn_drop_a",
        title="router A drops connection attempts (SYN) from the client",
        fault=faults.syn_drop("a"),
        legs=_same(A_LEGS, LegExpect(first=("connect_timeout",))),
        verdict=("suspect", ("router_a",)),
        detect_within=CONNECT_DETECT,
        hold=4.0,
        at_start=True,
        notes="Established flows would pass untouched (invisible until a reconnect), so the"
        " fault is in place before the legs start. Every router-A leg fails, unlike the"
        " PMTU black hole, where only the TLS leg does.",
    ),
    Row(
        name="link_down_a",
        title="router A's uplink to the server goes down",
        fault=faults.link_down("a"),
        legs=_same(
            A_LEGS, LegExpect(first=("rtt_timeout",), then=("unreachable", "connect_timeout"))
        ),
        verdict=("suspect", ("router_a",)),
        detect_within=TIMEOUT_DETECT,
        hold=5.0,
        same_as={"icmp_net_unreachable_a": _SAME_NET_UNREACHABLE},
        notes="Router A has no route left and answers net-unreachable, but the kernel"
        " rate-limits those route errors (about one a second per source, a global"
        " setting), so some reconnects get no answer and time out instead.",
    ),
    Row(
        name="rate_limit_a",
        title="tight token bucket on router A towards the client (tbf 2 kbit/s)",
        fault=faults.rate_limit("a", "2kbit", burst="600", latency="100ms"),
        legs=_same(
            A_LEGS, LegExpect(first=("rtt_timeout",), then=("connect_timeout", "rtt_timeout"))
        ),
        verdict=("suspect", ("router_a",)),
        # The queue drains its burst first, then the heartbeats starve.
        detect_within=TIMEOUT_DETECT + 2.5,
        hold=6.5,
        notes="About 11 kbit/s of heartbeats, echoes and ACKs meet 2 kbit/s: the queue"
        " overflows, retransmissions back off, watchdogs fire. The legs do not fail in"
        " the same heartbeat, so the verdict passes through partial states first.",
    ),
    Row(
        name="client_offline",
        title="the probe's own host loses its network (both client links down)",
        fault=faults.client_offline(),
        legs=_same(A_LEGS + B_LEGS, LegExpect(first=("probe_network",), then=("probe_network",))),
        verdict=("probe_unhealthy", ()),
        faulted=(),
        detect_within=TIMEOUT_DETECT,
        hold=4.0,
        notes="No route from the probe's host: established legs go silent and their"
        " watchdogs fire; the local routing table (asked with a UDP connect, nothing sent)"
        " has no route to any target, so every failure is the probe's own network and no"
        " segment is convicted.",
    ),
    Row(
        name="server_sigstop",
        title="the echo server process is SIGSTOPped",
        fault=faults.stop_process("echo"),
        legs=_same(("ws_a", "ws_b"), _SILENT),
        verdict=("suspect", ("server",)),
        detect_within=TIMEOUT_DETECT,
        hold=4.5,
        notes="The kernel still completes TCP handshakes into the listen backlog: the"
        " reconnect times out in the WebSocket handshake, not in TCP.",
    ),
    Row(
        name="server_sigkill",
        title="the echo server process is SIGKILLed (restarted to heal)",
        fault=faults.kill_process("echo"),
        legs=_same(
            ("ws_a", "ws_b"),
            # The kernel closes a killed process's sockets with a FIN, or with a RST when
            # unread data (a heartbeat in flight) was still in its receive buffer.
            LegExpect(
                first=("closed_without_frame", "reset"),
                then=("connect_refused",),
                then_required=True,
            ),
        ),
        verdict=("suspect", ("server",)),
        detect_within=IMMEDIATE_DETECT,
        recover_within=RECOVER + 1.0,
        hold=2.5,
        notes="The kernel closes the dead process's sockets with a FIN (no close frame),"
        " then refuses reconnects with a RST.",
    ),
    Row(
        name="backend_sigstop",
        title="the HTTP backend process is SIGSTOPped",
        fault=faults.stop_process("backend"),
        legs={"http_a": LegExpect(first=("rtt_timeout",))},
        verdict=("suspect", ("backend",)),
        detect_within=TIMEOUT_DETECT,
        hold=3.5,
        notes="Connected but unanswered: the GET times out; reconnects are accepted by the"
        " kernel and time out the same way (counted once).",
    ),
)

ROWS_BY_NAME: dict[str, Row] = {row.name: row for row in ROWS}
