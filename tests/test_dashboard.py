"""The Grafana dashboard: valid, every panel queried, every query parsed by promtool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.ops_queries import dashboard, dashboard_queries
from tests.support.tools import promtool_check_queries


@pytest.mark.e2e
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dashboard_queries()
    for query in queries:
        assert "$" not in query, f"unsubstituted Grafana variable in {query}"
    promtool_check_queries(queries, tmp_path, "dashboard")


def test_dashboard_is_valid_and_every_panel_has_a_query() -> None:
    data = dashboard()
    assert data["uid"]
    assert data["title"]
    panels = data["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {var["name"] for var in data["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r}: empty expr"
            assert target.get("refId")
        assert "gridPos" in panel
    by_type: dict[str, str] = {}
    for panel in panels:
        for target in panel.get("targets", []):
            by_type[target["expr"]] = panel["type"]
    joined = "\n".join(by_type)
    # The views the issue asks for.
    assert any("t3probe_connected" in e and t == "state-timeline" for e, t in by_type.items()), (
        "per-leg state timeline"
    )
    assert "histogram_quantile(0.99" in joined
    assert "t3probe_rtt_seconds_bucket" in joined
    assert re.search(r"by \(leg, reason\) \(increase\(t3probe_disconnects_total", joined)
    assert "t3probe_verdict" in joined
    assert "t3probe_segment_suspected" in joined
    assert "t3probe_event_loop_lag_seconds_bucket" in joined
