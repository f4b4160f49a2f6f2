"""The PromQL operators are given: the runbook's, docs/scaling.md's and the dashboard's.

The ops-artifact tests parse them with promtool; test_e2e_prometheus.py runs them
against a real Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.artifacts import DASHBOARD, RUNBOOK, SCALING, fenced_blocks

# Grafana's variables, replaced by fixed values so that a panel query is plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": "t3probe",
    "$vantage": ".*",
    "$instance": ".*",
    "$leg": ".*",
    "$node": ".*",
}


def promql_blocks(path: Path) -> list[str]:
    blocks = fenced_blocks(path.read_text(encoding="utf-8"))
    return [body.strip() for lang, body in blocks if lang == "promql"]


def runbook_queries() -> list[str]:
    """Every PromQL query printed in the runbook (one per ```promql block)."""
    return promql_blocks(RUNBOOK)


def scaling_queries() -> list[str]:
    return promql_blocks(SCALING)


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def substitute_grafana_variables(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_queries() -> list[str]:
    """Every ``expr`` of the dashboard (panels and annotations) as plain PromQL."""
    return [substitute_grafana_variables(expr) for expr in _exprs(dashboard())]
