"""tools/gen_prometheusrule.py --runbook-base: every runbook_url points at your own copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.artifacts import GENERATOR, ROOT, alert_rules, markdown_anchors

SHIPPED = "https://github.com/t3probe/t3probe/blob/main/docs/runbooks/"


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_runbook_base_moves_every_runbook_url_and_keeps_file_and_anchor(tmp_path: Path) -> None:
    output = tmp_path / "prometheusrule.yaml"
    base = "https://git.example.com/ops/t3probe/-/blob/v1/docs/runbooks"
    result = _generate("--runbook-base", base, "--output", str(output))
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(output.read_text(encoding="utf-8"))
    alerts = {
        rule["alert"]: rule
        for group in manifest["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    shipped = alert_rules()
    assert set(alerts) == set(shipped)
    runbook = (ROOT / "docs" / "runbooks" / "t3-drop-attribution.md").read_text(encoding="utf-8")
    for name, rule in alerts.items():
        url = rule["annotations"]["runbook_url"]
        assert url == shipped[name]["annotations"]["runbook_url"].replace(SHIPPED, base + "/")
        assert url.startswith(base + "/t3-drop-attribution.md#"), url
        assert url.partition("#")[2] in markdown_anchors(runbook), url
        # Nothing else changes.
        assert {**rule, "annotations": {**rule["annotations"], "runbook_url": None}} == {
            **shipped[name],
            "annotations": {**shipped[name]["annotations"], "runbook_url": None},
        }
    # The committed manifest is untouched and still matches the shipped rules.
    assert _generate("--check").returncode == 0


def test_runbook_base_must_be_an_absolute_folder_url(tmp_path: Path) -> None:
    for bad in ("runbooks/", "ftp://example.com/runbooks/", "https://x.example/rb#top"):
        result = _generate("--runbook-base", bad, "--output", str(tmp_path / "out.yaml"))
        assert result.returncode == 2
        assert "--runbook-base" in result.stderr and repr(bad) in result.stderr
        assert not (tmp_path / "out.yaml").exists()
