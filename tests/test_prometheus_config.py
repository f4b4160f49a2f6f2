"""deploy/prometheus/prometheus.yml: valid for promtool, scraping the probe with the rules."""

from __future__ import annotations

import pytest

from tests.support.artifacts import PROBE_PORT, PROM_CONFIG, RULES, load_yaml
from tests.support.tools import promtool, run_tool


@pytest.mark.e2e
def test_prometheus_config_passes_promtool() -> None:
    run_tool([promtool(), "check", "config", str(PROM_CONFIG)])


def test_prometheus_config_scrapes_probe_and_backend_node() -> None:
    config = load_yaml(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "t3probe" in jobs
    assert "node" in jobs
    targets = [t for sc in jobs["t3probe"]["static_configs"] for t in sc["targets"]]
    assert all(t.endswith(f":{PROBE_PORT}") for t in targets), targets
    rule_files = [(PROM_CONFIG.parent / f).resolve() for f in config["rule_files"]]
    assert RULES.resolve() in rule_files
