"""Where the committed operator artifacts live, and readers for the parts several tests check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "t3probe.rules.yml"
PROMTOOL_TESTS = ROOT / "tests" / "promtool"
RUNBOOK = ROOT / "docs" / "runbooks" / "t3-drop-attribution.md"
SCALING = ROOT / "docs" / "scaling.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "t3probe-dashboard.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GENERATOR = ROOT / "tools" / "gen_prometheusrule.py"
REFERENCE_CONFIG = ROOT / "examples" / "reference.yaml"

PROBE_PORT = 9108
PROBE_UID = 65532


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load_yaml(RULES)["groups"]
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in all_rules() if "alert" in rule}


def recording_names() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every fenced code block of a Markdown text."""
    pattern = r"^[ \t]*```([\w-]*)[ \t]*\n(.*?)^[ \t]*```[ \t]*$"
    for match in re.finditer(pattern, text, re.M | re.S):
        yield match.group(1), match.group(2)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    """Anchors of all headings outside code blocks (GitHub numbering for duplicates)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or match is None:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors
