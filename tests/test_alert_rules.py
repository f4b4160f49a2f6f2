"""alerts/t3probe.rules.yml: promtool's checks and unit tests, the alert set, its annotations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.artifacts import (
    PROMTOOL_TESTS,
    RULES,
    RUNBOOK,
    alert_rules,
    all_rules,
    github_slug,
    load_yaml,
    markdown_anchors,
    recording_names,
)
from tests.support.tools import promtool, run_tool

RUNBOOK_URL_PREFIX = (
    "https://github.com/t3probe/t3probe/blob/main/docs/runbooks/t3-drop-attribution.md#"
)
ALERTS = (
    "T3ProbeLegDown",
    "T3ProbeDropBurst",
    "T3ProbeAbsent",
    "T3ProbeSegmentSuspected",
    "T3ProbeSegmentDegraded",
    "T3ProbeStalled",
    "T3ProbeLegMostlyDown",
    "T3ProbeUplinkSuspected",
    "T3ProbeUnhealthy",
    "T3ProbeRestarting",
    "T3ProbeConfigReloadFailed",
    "T3ProbeWallOpen",
)
SEVERITIES = {"critical", "warning", "info"}


@pytest.mark.e2e
def test_promtool_check_rules() -> None:
    proc = run_tool([promtool(), "check", "rules", str(RULES)])
    assert "SUCCESS" in proc.stdout


@pytest.mark.e2e
@pytest.mark.parametrize(
    "test_file", sorted(PROMTOOL_TESTS.glob("*.yml")), ids=lambda path: path.name
)
def test_promtool_rule_unit_tests(test_file: Path) -> None:
    run_tool([promtool(), "test", "rules", str(test_file)])


def test_promtool_suite_shows_each_alert_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    files = sorted(PROMTOOL_TESTS.glob("*.yml"))
    assert files, "no promtool rule tests in tests/promtool/"
    for path in files:
        suite = load_yaml(path)
        rule_files = [(path.parent / name).resolve() for name in suite["rule_files"]]
        assert rule_files == [RULES.resolve()], f"{path.name} must test {RULES}"
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(ALERTS) <= firing, f"alerts never shown firing: {set(ALERTS) - firing}"
    assert set(ALERTS) <= quiet, f"alerts never shown staying quiet: {set(ALERTS) - quiet}"


def test_alert_set_and_annotations() -> None:
    alerts = alert_rules()
    assert set(alerts) == set(ALERTS)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url", "severity_reason"}, (
            name
        )
        # The description names what it is about and shows a value.
        about = {
            "T3ProbeLegDown": "$labels.leg",
            "T3ProbeDropBurst": "$labels.leg",
            "T3ProbeSegmentSuspected": "$labels.segment",
            "T3ProbeSegmentDegraded": "$labels.segment",
            "T3ProbeStalled": "$labels.instance",
            "T3ProbeAbsent": "$labels.instance",
            "T3ProbeLegMostlyDown": "$labels.leg",
            "T3ProbeUplinkSuspected": "$labels.instance",
            "T3ProbeUnhealthy": "$labels.instance",
            "T3ProbeRestarting": "$labels.instance",
            "T3ProbeConfigReloadFailed": "$labels.instance",
            "T3ProbeWallOpen": "$labels.leg",
        }[name]
        assert about in annotations["description"], name
        if name != "T3ProbeAbsent":
            assert "$value" in annotations["description"], name
    # Silence must never read as health.
    absent_expr = alerts["T3ProbeAbsent"]["expr"]
    assert "absent(" in absent_expr
    assert re.search(r"up\{[^}]*job=\"t3probe\"[^}]*\}\s*==\s*0", absent_expr)
    assert "t3probe_event_loop_lag_seconds" in " ".join(
        rule["expr"] for rule in all_rules() if "record" in rule
    )
    assert "instance:t3probe_event_loop_lag_seconds" in alerts["T3ProbeStalled"]["expr"]


def test_descriptions_that_query_further_stay_within_their_vantage() -> None:
    for name, rule in alert_rules().items():
        description = rule["annotations"]["description"]
        for query in re.findall(r'printf "([^"]*)"', description):
            if "{" in query:
                assert "vantage=%q" in query, f"{name}: {query}"
        if "$labels.instance" in description:
            assert "$labels.vantage" in description, name


def test_recording_rule_names_follow_level_metric_operation() -> None:
    names = recording_names()
    assert names
    for name in names:
        assert re.fullmatch(r"[a-z_]+:t3probe_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_runbook_urls_match_runbook_headings() -> None:
    anchors = markdown_anchors(RUNBOOK.read_text(encoding="utf-8"))
    for name, rule in alert_rules().items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL_PREFIX), f"{name}: {url}"
        anchor = url.removeprefix(RUNBOOK_URL_PREFIX)
        assert anchor in anchors, f"{name}: no heading for #{anchor} in {RUNBOOK.name}"
        assert anchor == github_slug(name), f"{name}: the section is named after the alert"
