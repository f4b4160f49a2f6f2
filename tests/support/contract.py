"""The contract's closed sets (README.md), written out independently of the code."""

from __future__ import annotations

DROP_REASONS = frozenset(
    {
        "dns_failed",
        "connect_refused",
        "connect_timeout",
        "tls_error",
        "handshake_rejected",
        "route_mismatch",
        "rtt_timeout",
        "closed_by_peer",
        "reset",
        "closed_without_frame",
        "unreachable",
        "http_error",
        "io_error",
        "probe_stall",
        "probe_network",
        "internal_error",
    }
)
# t3probe_dns_failures_total's reason label.
DNS_FAILURES = frozenset(
    {
        "timeout",
        "servfail",
        "nxdomain",
        "empty",
        "malformed",
        "http_error",
        "tls_error",
        "connect_error",
        "protocol_error",
        "forbidden_address",
    }
)
# t3probe_connect_duration_seconds' phase label: TCP and TLS apart, then the WebSocket upgrade.
CONNECT_PHASES = frozenset({"dns", "tcp", "tls", "upgrade"})
VERDICTS = frozenset(
    {"infra_clean", "suspect", "degraded", "inconclusive", "probe_unhealthy", "unknown"}
)
# A leg's `role` (t3probe_leg_info's role label): alerts select wall-off guards by it.
LEG_ROLES = frozenset({"path", "wall"})
