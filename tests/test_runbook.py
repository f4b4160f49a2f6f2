"""The runbook and docs/scaling.md: required sections, links that resolve, PromQL that parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.artifacts import RUNBOOK, SCALING, markdown_anchors
from tests.support.ops_queries import runbook_queries, scaling_queries
from tests.support.tools import promtool_check_queries


@pytest.mark.parametrize("doc", [RUNBOOK, SCALING], ids=lambda path: path.name)
def test_markdown_internal_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    anchors = markdown_anchors(text)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    missing = sorted({link for link in links if link not in anchors})
    assert not missing, f"{doc.name}: links to missing headings {missing}"


def test_runbook_has_the_required_sections() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = markdown_anchors(text)
    for needed in (
        "attribution-table",
        "per-leg-queries",
        "using-verdict-and-events",
        "server-side-log-recipes",
        "host-pressure-on-the-backend-host",
        "known-root-causes",
    ):
        assert needed in anchors, needed
    for phrase in (
        "t3probe attribute --at 14:03 --prometheus http://prometheus:9090",
        "/verdict",
        "/events",
        "1006",
        "1001",
        "499",
        "502",
        "graphite_exporter",
    ):
        assert phrase in text, phrase
    queries = runbook_queries()
    assert any("node_pressure_memory" in q for q in queries), "host pressure (PSI) queries"
    for leg in ("cloudflare", "internal", "t3serve"):
        assert leg in text


def test_every_promql_block_holds_one_query() -> None:
    for doc in (RUNBOOK, SCALING):
        # Top-level blocks only, so that a simple extractor finds every query.
        indented = re.findall(r"^[ \t]+```promql", doc.read_text(encoding="utf-8"), re.M)
        assert not indented, f"{doc.name}: indented ```promql block"
    for query in runbook_queries() + scaling_queries():
        assert query, "empty ```promql block"
        assert "\n\n" not in query, f"one query per block:\n{query}"
        assert "$" not in query, f"placeholders cannot be executed:\n{query}"
        assert not re.search(r"<[A-Za-z_ ]+>|\bTIME\b", query), f"placeholder in:\n{query}"


@pytest.mark.e2e
def test_runbook_and_doc_queries_parse(tmp_path: Path) -> None:
    queries = runbook_queries()
    assert len(queries) >= 15, "the runbook should print its per-leg queries as ```promql"
    promtool_check_queries(queries, tmp_path, "runbook")
    promtool_check_queries(scaling_queries(), tmp_path, "scaling")
