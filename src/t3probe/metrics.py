"""The metric contract, registered on a registry that is passed in (never the global one)."""

from __future__ import annotations

import ipaddress

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from t3probe import __version__
from t3probe.attribution import VerdictName
from t3probe.config import (
    LEG_KINDS,
    LEG_ROLES,
    RESOLVER_KINDS,
    AnyLegConfig,
    DohResolverConfig,
    PinnedResolverConfig,
    ProbeConfig,
)
from t3probe.leanmetrics import LeanCounter, LeanGauge, LeanHistogram
from t3probe.reasons import CONNECT_PHASES, DnsFailure, Reason
from t3probe.redact import redact_url

RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
# Connect phases: a handful of buckets tell a 1 ms loopback dial from a 100 ms WAN one and
# from a stalled handshake; RTT's 14 would cost each leg 36 more series (docs/metrics.md).
CONNECT_BUCKETS = (0.005, 0.025, 0.1, 0.5, 2.5)
AGE_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 7 * 86400.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
VERDICTS = tuple(verdict.value for verdict in VerdictName)
DNS_FAILURE_REASONS = tuple(reason.value for reason in DnsFailure)


def server_label(server: str) -> str:
    """A DoH server URL as a label value: scraped, stored and shown, so no credentials."""
    return redact_url(server)


class ProbeMetrics:
    def __init__(self, registry: CollectorRegistry, config: ProbeConfig) -> None:
        self.registry = registry
        self.connected = LeanGauge(
            "t3probe_connected",
            "1 while the leg is up; with several connections, the share of them that are up",
            ["leg"],
            registry,
        )
        self.connections = LeanGauge(
            "t3probe_leg_connections",
            "Connections the leg holds over its route (its configured connections)",
            ["leg"],
            registry,
        )
        self.connections_up = LeanGauge(
            "t3probe_leg_connections_up",
            "Connections of the leg that are up",
            ["leg"],
            registry,
        )
        self.disconnects = LeanCounter(
            "t3probe_disconnects",
            "Outages: a leg going down, by the reason that took it down",
            ["leg", "reason"],
            registry,
        )
        self.reconnect_failures = LeanCounter(
            "t3probe_reconnect_failures",
            "Failed reconnect attempts of a leg that is already down, by reason",
            ["leg", "reason"],
            registry,
        )
        self.rtt = LeanHistogram(
            "t3probe_rtt_seconds",
            "Heartbeat round trip: WebSocket echo or HTTP GET",
            ["leg"],
            registry,
            buckets=RTT_BUCKETS,
        )
        self.connection_age = LeanHistogram(
            "t3probe_connection_age_seconds",
            "Age of a WebSocket connection when it died",
            ["leg"],
            registry,
            buckets=AGE_BUCKETS,
        )
        self.last_disconnect = LeanGauge(
            "t3probe_last_disconnect_timestamp_seconds",
            "Unix time of the leg's last death",
            ["leg"],
            registry,
        )
        self.connect_duration = LeanHistogram(
            "t3probe_connect_duration_seconds",
            "Duration of each connection phase: dns, tcp, tls, upgrade (WebSocket)",
            ["leg", "phase"],
            registry,
            buckets=CONNECT_BUCKETS,
        )
        self.dns_failures = LeanCounter(
            "t3probe_dns_failures",
            "Resolver failures, also those hidden by serving a stale answer",
            ["leg", "reason"],
            registry,
        )
        self.doh_server_up = LeanGauge(
            "t3probe_doh_server_up",
            "0 while the DoH server's last exchange failed (it sits out a back-off), else 1",
            ["leg", "server"],
            registry,
        )
        # Which servers each leg's series were made for, so a reload can remove them.
        self._doh_servers: dict[str, tuple[str, ...]] = {}
        self.leg_degraded = LeanGauge(
            "t3probe_leg_degraded",
            "1 while the leg is up but slow (RTT above its threshold) or losing heartbeats",
            ["leg"],
            registry,
        )
        self.heartbeats_lost = LeanCounter(
            "t3probe_heartbeats_lost",
            "Heartbeats never answered while the connection stayed up (overtaken by a newer echo)",
            ["leg"],
            registry,
        )
        self.segment_degraded = Gauge(
            "t3probe_segment_degraded",
            "1 while attribution finds the segment slow (on degraded legs, on no fast one)",
            ["segment"],
            registry=registry,
        )
        self.segment_suspected = Gauge(
            "t3probe_segment_suspected",
            "1 while attribution convicts the segment",
            ["segment"],
            registry=registry,
        )
        self.verdict = Gauge(
            "t3probe_verdict",
            "1 for the current attribution verdict",
            ["verdict"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "t3probe_event_loop_lag_seconds",
            "The probe's own event-loop scheduling delay",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.leg_info = LeanGauge(
            "t3probe_leg_info",
            "Static description of each leg (role: path, or wall for a wall-off guard)",
            ["leg", "kind", "resolver", "role"],
            registry,
        )
        self.build_info = Gauge(
            "t3probe_build_info", "Build information", ["version"], registry=registry
        )
        self.build_info.labels(version=__version__).set(1)
        # Its own metric, not a build_info label: T3ProbeRestarting joins build_info
        # "ignoring (version)", and a label more would make that join match nothing.
        self.event_loop_info = Gauge(
            "t3probe_event_loop_info",
            "Always 1: the event loop the probe runs on (uvloop with t3probe[fast])",
            ["loop"],
            registry=registry,
        )
        self.reload_successful = Gauge(
            "t3probe_config_last_reload_successful",
            "1 if the last config reload succeeded (start-up counts as one)",
            registry=registry,
        )
        self.reload_success_time = Gauge(
            "t3probe_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (start-up or reload)",
            registry=registry,
        )
        self.reload_successful.set(1)
        # process_start_time_seconds is how T3ProbeRestarting sees a crash loop; the
        # registry is our own, so prometheus_client's defaults must be added to it.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._preinitialise(config)

    def add_leg(self, leg: AnyLegConfig) -> None:
        # Absent series read as "no data"; operators' rate() and alerts need explicit zeros.
        self.connected.labels(leg=leg.name).set(0)
        self.connections.labels(leg=leg.name).set(leg.connections)
        self.connections_up.labels(leg=leg.name).set(0)
        self.last_disconnect.labels(leg=leg.name).set(0)
        self.leg_degraded.labels(leg=leg.name).set(0)
        self.heartbeats_lost.labels(leg=leg.name)
        self.leg_info.labels(
            leg=leg.name, kind=leg.kind, resolver=leg.resolver.kind, role=leg.role
        ).set(1)
        # The drop alerts take increase() over every reason: a series born at 1 would
        # hide its first drop. Reconnect failures repeat while a leg is down, and only
        # T3ProbeWallOpen's http_error needs its zero; the rest appear when they occur.
        for reason in Reason:
            self.disconnects.labels(leg=leg.name, reason=reason.value)
        self.reconnect_failures.labels(leg=leg.name, reason=Reason.HTTP_ERROR.value)
        if leg.holds_connection:
            self.connection_age.labels(leg=leg.name)
        self.rtt.labels(leg=leg.name)
        # Connect phases appear with their first dial (before the first scrape), and only
        # the phases the leg has: no tls series for ws://, no dns one for an address.
        # A pinned address or a literal one never fails to resolve; any other name can.
        if not isinstance(leg.resolver, PinnedResolverConfig) and not _is_address(leg.host):
            for dns_reason in DNS_FAILURE_REASONS:
                self.dns_failures.labels(leg=leg.name, reason=dns_reason)
        # Servers come from the config (at most 8 per leg): a bounded label set.
        if isinstance(leg.resolver, DohResolverConfig):
            self._doh_servers[leg.name] = tuple(leg.resolver.servers)
            for server in leg.resolver.servers:
                self.set_doh_server_up(leg.name, server, up=True)

    def remove_leg(self, name: str) -> None:
        """Drop every series of a leg: a removed leg must not linger as a stale zero."""
        for single in (
            self.connected,
            self.connections,
            self.connections_up,
            self.last_disconnect,
            self.connection_age,
            self.rtt,
            self.leg_degraded,
            self.heartbeats_lost,
        ):
            single.remove(name)
        for kind in LEG_KINDS:
            for resolver in RESOLVER_KINDS:
                for role in LEG_ROLES:
                    self.leg_info.remove(name, kind, resolver, role)
        for reason in Reason:
            self.disconnects.remove(name, reason.value)
            self.reconnect_failures.remove(name, reason.value)
        for phase in CONNECT_PHASES:
            self.connect_duration.remove(name, phase)
        for dns_reason in DNS_FAILURE_REASONS:
            self.dns_failures.remove(name, dns_reason)
        for server in self._doh_servers.pop(name, ()):
            self.doh_server_up.remove(name, server_label(server))

    def set_doh_server_up(self, leg: str, server: str, *, up: bool) -> None:
        self.doh_server_up.labels(leg=leg, server=server_label(server)).set(1 if up else 0)

    def add_segment(self, segment: str) -> None:
        self.segment_suspected.labels(segment=segment).set(0)
        self.segment_degraded.labels(segment=segment).set(0)

    def remove_segment(self, segment: str) -> None:
        self.segment_suspected.remove(segment)
        self.segment_degraded.remove(segment)

    def _preinitialise(self, config: ProbeConfig) -> None:
        for leg in config.legs:
            self.add_leg(leg)
        for segment in config.segments:
            self.add_segment(segment)
        for verdict in VERDICTS:
            self.verdict.labels(verdict=verdict).set(1 if verdict == "unknown" else 0)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
