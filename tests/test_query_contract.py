"""Every shipped query (rules, runbook, scaling doc, dashboard) keeps to the metric contract."""

from __future__ import annotations

import re

from tests.support.artifacts import all_rules, recording_names
from tests.support.contract import CONNECT_PHASES, DROP_REASONS, LEG_ROLES, VERDICTS
from tests.support.ops_queries import dashboard_queries, runbook_queries, scaling_queries

# The metric contract (README.md and docs), by type.
GAUGES = {
    "t3probe_connected",
    "t3probe_last_disconnect_timestamp_seconds",
    "t3probe_segment_suspected",
    "t3probe_segment_degraded",
    "t3probe_leg_degraded",
    "t3probe_leg_connections",
    "t3probe_leg_connections_up",
    "t3probe_leg_info",
    "t3probe_build_info",
    "t3probe_verdict",
    "t3probe_config_last_reload_successful",
    "t3probe_config_last_reload_success_timestamp_seconds",
    "t3probe_doh_server_up",
}
COUNTERS = {
    "t3probe_disconnects_total",
    "t3probe_reconnect_failures_total",
    "t3probe_dns_failures_total",
    "t3probe_heartbeats_lost_total",
}
HISTOGRAMS = {
    "t3probe_rtt_seconds",
    "t3probe_connection_age_seconds",
    "t3probe_connect_duration_seconds",
    "t3probe_event_loop_lag_seconds",
}
CONTRACT_SERIES = (
    GAUGES | COUNTERS | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)


def metric_names(expr: str) -> set[str]:
    """t3probe_* series names in a query (recording-rule names with colons excluded)."""
    return set(re.findall(r"(?<![\w:])t3probe_[a-z0-9_]+(?![\w:])", expr))


def test_queries_only_use_contract_metrics_and_reasons() -> None:
    sources = {
        "rules": [rule["expr"] for rule in all_rules()],
        "runbook": runbook_queries(),
        "scaling": scaling_queries(),
        "dashboard": dashboard_queries(),
    }
    recorded = recording_names()
    for source, queries in sources.items():
        for query in queries:
            unknown = metric_names(query) - CONTRACT_SERIES
            assert not unknown, f"{source}: not in the metric contract: {unknown} in {query}"
            for name in re.findall(r"[a-z_]+:t3probe_[a-z0-9_]+:[a-z0-9_]+", query):
                assert name in recorded, f"{source}: unknown recording rule {name}"
            for reason in re.findall(r"reason\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(reason.split("|")) <= DROP_REASONS, f"{source}: reason {reason}"
            for verdict in re.findall(r"verdict\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(verdict.split("|")) <= VERDICTS, f"{source}: verdict {verdict}"
            for phase in re.findall(r"phase\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(phase.split("|")) <= CONNECT_PHASES, f"{source}: phase {phase}"
            for role in re.findall(r"role\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(role.split("|")) <= LEG_ROLES, f"{source}: role {role}"
