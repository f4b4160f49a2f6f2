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
    assert {"datasource", "job", "vantage", "instance", "leg"} <= variables
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
    assert "by (vantage, leg, reason)" in joined
    assert any("t3probe_rtt_seconds_bucket" in e and t == "heatmap" for e, t in by_type.items()), (
        "RTT heatmap"
    )
    assert "t3probe_verdict" in joined
    assert "t3probe_segment_suspected" in joined
    assert "t3probe_event_loop_lag_seconds_bucket" in joined


# Metrics without a `leg` label: a leg=~"$leg" matcher on them would match nothing.
PROBE_WIDE = {
    "t3probe_verdict",
    "t3probe_segment_suspected",
    "t3probe_segment_degraded",
    "t3probe_event_loop_lag_seconds_bucket",
    "t3probe_build_info",
    "up",
}
SELECTOR = re.compile(r"\b(t3probe_[a-z_]+|up)\{([^}]*)\}")


def test_every_probe_selector_follows_the_variables() -> None:
    """Several vantages share `instance`: each query must narrow by job and vantage too."""
    exprs = [a["expr"] for a in dashboard()["annotations"]["list"] if "expr" in a]
    exprs += [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    selectors = [m for expr in exprs for m in SELECTOR.finditer(expr)]
    assert len(selectors) > 20
    for match in selectors:
        metric, matchers = match.groups()
        for name in ("job", "vantage", "instance"):
            assert f'{name}=~"${name}"' in matchers, f"{metric}{{{matchers}}} lacks ${name}"
        if metric not in PROBE_WIDE:
            assert re.search(r'leg=~"\$leg"|leg="\w+"', matchers), f"{metric}{{{matchers}}}: no leg"
    for expr in exprs:
        # The heatmap draws one distribution (`by (le)`); every other view keeps vantages apart.
        groupings = re.findall(r"by \(([^)]*)\)", expr)
        for grouping in groupings:
            assert "vantage" in grouping or grouping == "le", f"groups without vantage: {expr}"


def test_bars_and_marks_count_each_drop_once() -> None:
    """The audit's two bugs: bars over a window wider than their step, a changes() mark."""
    drops = next(p for p in dashboard()["panels"] if p["title"] == "Drops by reason")
    (target,) = drops["targets"]
    assert "$__rate_interval" not in target["expr"]
    assert "offset $__interval" in target["expr"]
    assert "own step" in drops["description"]
    (annotation,) = [a for a in dashboard()["annotations"]["list"] if "expr" in a]
    assert "changes(" not in annotation["expr"]
    assert "t3probe_disconnects_total" in annotation["expr"]


def _mapped(panel: dict[str, object], value: float) -> tuple[str, str] | None:
    """(text, color) Grafana shows for ``value`` by the panel's value and range mappings."""
    defaults = panel["fieldConfig"]["defaults"]  # type: ignore[index]
    for mapping in defaults.get("mappings", []):
        options = mapping["options"]
        if mapping["type"] == "value":
            for key, result in options.items():
                if float(key) == value:
                    return result["text"], result["color"]
        elif mapping["type"] == "range":
            low, high = options.get("from"), options.get("to")
            if (low is None or value >= low) and (high is None or value <= high):
                return options["result"]["text"], options["result"]["color"]
    return None


def test_the_leg_state_shows_a_partial_leg_as_neither_up_nor_down() -> None:
    # With connections: N, t3probe_connected is the share of connections up: 0.5 is a
    # leg half broken, which must not read as "down" (red, like a dead leg) nor "up".
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Leg state"]
    assert _mapped(panel, 0.0) == ("down", "red")
    assert _mapped(panel, 1.0) == ("up", "green")
    for share in (1 / 64, 0.5, 63 / 64):
        shown = _mapped(panel, share)
        assert shown is not None, share
        assert shown[0] == "partial" and shown[1] not in ("red", "green"), shown
