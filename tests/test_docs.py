"""The reference docs agree with what a live probe does: metrics, JSON keys, defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from t3probe.attribution import LegObservation, VerdictName, compute_verdict
from t3probe.config import DohResolverConfig
from t3probe.echo import EchoLimits
from t3probe.reasons import DnsFailure, Reason
from tests.support.artifacts import ROOT, RUNBOOK, alert_rules, fenced_blocks
from tests.support.harness import (
    Peer,
    every_kind_config,
    leg,
    probe_config,
    running_probe,
)
from tests.support.reference import SEGMENTS

README = ROOT / "README.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
HTTP_API_DOC = ROOT / "docs" / "http-api.md"
ROW = re.compile(r"^\| `([a-z0-9_:]+)` \| (\w+) \| ([^|]+) \|", re.M)


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _exposed(exposition: str) -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, label names) from a text exposition (``le`` left out)."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))
    labels: dict[str, set[str]] = {name: set() for name in types}
    for sample, label_text in re.findall(r"^([a-zA-Z_:][\w:]*)\{([^}]*)\}", exposition, re.M):
        names = set(re.findall(r'(\w+)="', label_text)) - {"le"}
        family = next(
            (n for n in (sample, re.sub(r"_(bucket|sum|count)$", "", sample)) if n in types),
            None,
        )
        assert family is not None, sample
        labels[family] |= names
    return {name: (kind, labels[name]) for name, kind in types.items()}


def _documented() -> dict[str, tuple[str, set[str]]]:
    rows: dict[str, tuple[str, set[str]]] = {}
    text = METRICS_DOC.read_text(encoding="utf-8")
    for name, kind, label_text in ROW.findall(text):
        if kind in ("counter", "gauge", "histogram", "summary"):
            assert name not in rows, f"{name} documented twice"
            rows[name] = (kind, set(re.findall(r"`(\w+)`", label_text)))
    return rows


async def test_every_exposed_metric_is_in_the_reference_with_its_type_and_labels(
    peer: Peer,
) -> None:
    config = every_kind_config(peer)
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await probe.wait_for("doh", "down")
        _, exposition = await _get(f"http://127.0.0.1:{probe.probe.port}/metrics")
    exposed = _exposed(exposition)
    documented = _documented()
    created = {name for name in exposed if name.endswith("_created")}
    assert created and "`<name>_created`" in METRICS_DOC.read_text(encoding="utf-8")
    for name in created:
        base = name.removesuffix("_created")
        assert base in documented or f"{base}_total" in documented, name
    missing = set(exposed) - created - set(documented)
    assert not missing, f"exposed but not in docs/metrics.md: {sorted(missing)}"
    stale = set(documented) - set(exposed)
    assert not stale, f"in docs/metrics.md but not exposed: {sorted(stale)}"
    for name, (kind, labels) in documented.items():
        assert exposed[name] == (kind, labels), f"{name}: docs say {kind} {sorted(labels)}"
    assert "docs/metrics.md" in README.read_text(encoding="utf-8")


def _keys_after(section: str, caption: str) -> set[str]:
    """First-column keys of the table that follows ``caption`` in ``section``."""
    _, found, rest = section.partition(f"\n{caption}\n")
    assert found, caption
    table = re.match(r"\s*((?:\|.*\n)+)", rest)
    assert table, caption
    return set(re.findall(r"^\| `(\w+)` \|", table.group(1), re.M))


def _api_sections() -> dict[str, str]:
    text = HTTP_API_DOC.read_text(encoding="utf-8")
    return {
        title: body
        for title, body in re.findall(r"^## `GET (/\w+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    }


async def test_events_and_verdict_answer_exactly_the_documented_keys(peer: Peer) -> None:
    sections = _api_sections()
    config = probe_config(
        [
            leg("closing", f"ws://127.0.0.1:{peer.port}/close/4000"),
            leg("http", f"http://127.0.0.1:{peer.port}/ok", kind="http"),
        ]
    )
    async with running_probe(config) as probe:
        base = f"http://127.0.0.1:{probe.probe.port}"
        down = await probe.wait_for("closing", "down")
        assert down.close_code == 4000
        await probe.wait_for("http", "up")
        _, body = await _get(f"{base}/events")
        events = json.loads(body)
        _, body = await _get(f"{base}/verdict")
        verdict = json.loads(body)
        assert (await _get(f"{base}/events?limit=0"))[0] == 400
        paged = json.loads((await _get(f"{base}/events?since=0&limit=1"))[1])
    assert set(events) == _keys_after(sections["/events"], "Top level:")
    event_keys = _keys_after(sections["/events"], "Each event:")
    assert events["events"] and all(set(e) == event_keys for e in events["events"])
    assert any(e["close_code"] == 4000 for e in events["events"])
    assert len(paged["events"]) == 1 and paged["more"] is True
    assert {"since", "limit"} <= _keys_after(sections["/events"], "Query parameters:")
    assert set(verdict) == _keys_after(sections["/verdict"], "Top level:")
    leg_keys = _keys_after(sections["/verdict"], "Each leg:")
    assert verdict["legs"] and all(set(v) == leg_keys for v in verdict["legs"].values())
    assert "docs/http-api.md" in README.read_text(encoding="utf-8")


def _verdict_samples(path: Path) -> list[dict[str, Any]]:
    samples = []
    for language, body in fenced_blocks(path.read_text(encoding="utf-8")):
        if language == "json" and '"verdict"' in body:
            samples.append(json.loads(body))
    assert samples, f"{path.name}: no /verdict sample"
    return samples


@pytest.mark.parametrize("doc", [RUNBOOK, HTTP_API_DOC], ids=lambda path: path.name)
def test_verdict_samples_are_what_the_reference_topology_computes(doc: Path) -> None:
    for sample in _verdict_samples(doc):
        legs = []
        for name, state in sample["legs"].items():
            assert tuple(state["segments"]) == SEGMENTS[name], name
            reason = None if state["reason"] is None else Reason(state["reason"])
            legs.append(LegObservation(name, SEGMENTS[name], state["state"], reason))
        verdict = compute_verdict(legs, now=0.0, policy=20.0)
        assert sample["verdict"] == verdict.verdict
        assert sample["suspects"] == list(verdict.suspects)
        assert sample["unexplained"] == list(verdict.unexplained)
        if "blast_radius" in sample:
            assert sample["blast_radius"] == verdict.blast_radius
        for name, state in sample["legs"].items():
            assert state["status"] == verdict.leg_status[name], name


def test_readme_gives_every_doh_resolver_default() -> None:
    text = README.read_text(encoding="utf-8")
    for name, field in DohResolverConfig.model_fields.items():
        if name in ("kind", "servers"):
            continue
        match = re.search(rf"^\| `resolver\.{name}` \(doh\) \| ([^|]+) \|", text, re.M)
        assert match, f"README: no row for resolver.{name}"
        shown = match.group(1).strip()
        default = field.default
        expected = "none" if default is None else f"{default:g}"
        assert shown == expected, f"resolver.{name}: README says {shown}, default is {expected}"


def test_license_is_the_apache_license_pyproject_names() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license\s*=\s*(\{\s*text\s*=\s*)?"Apache-2.0"', pyproject, re.M)
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "9. Accepting Warranty or Additional Liability." in text


# The closed sets and alerts of the first release (fe584e1), written out: whatever was
# added since must have an upgrade note.
FIRST_RELEASE = {
    "reasons": {
        "dns_failed", "connect_refused", "connect_timeout", "tls_error",
        "handshake_rejected", "route_mismatch", "rtt_timeout", "closed_by_peer", "reset",
        "http_error", "io_error", "probe_stall", "internal_error",
    },
    "verdicts": {"infra_clean", "suspect", "probe_unhealthy", "unknown"},
    "dns_failures": {
        "timeout", "servfail", "nxdomain", "empty", "malformed", "http_error", "tls_error",
        "connect_error", "forbidden_address",
    },
    "alerts": {
        "T3ProbeLegDown", "T3ProbeDropBurst", "T3ProbeAbsent", "T3ProbeSegmentSuspected",
        "T3ProbeStalled",
    },
}  # fmt: skip


def test_upgrade_notes_name_everything_added_since_the_first_release() -> None:
    notes = (ROOT / "docs" / "upgrading.md").read_text(encoding="utf-8")
    now = {
        "reasons": {reason.value for reason in Reason},
        "verdicts": {verdict.value for verdict in VerdictName},
        "dns_failures": {failure.value for failure in DnsFailure},
        "alerts": set(alert_rules()),
    }
    for kind, names in now.items():
        assert FIRST_RELEASE[kind] <= names, f"{kind} lost {FIRST_RELEASE[kind] - names}"
        missing = {name for name in names - FIRST_RELEASE[kind] if f"`{name}`" not in notes}
        assert not missing, f"docs/upgrading.md says nothing about new {kind}: {missing}"
    assert "docs/upgrading.md" in README.read_text(encoding="utf-8")


def test_echo_contract_states_the_reference_limits() -> None:
    text = (ROOT / "docs" / "echo-contract.md").read_text(encoding="utf-8")
    limits = EchoLimits()
    for phrase in (
        f"| {limits.max_frame_bytes} bytes |",
        f"| {limits.messages_per_second:g}/s, burst {limits.burst} |",
        f"| {limits.max_connections} |",
        f"| {limits.idle_timeout_seconds:g} s |",
        f"the {limits.ping_interval_seconds:g} s ping interval",
        f"{limits.header_timeout_seconds:g} s to finish, {limits.max_headers} headers,"
        f" {limits.max_header_line_bytes}-byte lines",
        "`/probe/ws`",
        "`/probe/healthz`",
    ):
        assert phrase in text, phrase
    assert "docs/echo-contract.md" in README.read_text(encoding="utf-8")


def test_benchmarks_known_issues_are_not_stale() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    tests = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").glob("*.py"))
    if "xfail" in text:
        marked = re.search(r"^\s*@pytest\.mark\.xfail", tests, re.M)
        assert marked, "docs/benchmarks.md cites xfail tests: none exist"
    # Every test the page names as a guard exists.
    for name in re.findall(r"`(test_\w+)`", text):
        assert f"def {name}(" in tests, f"docs/benchmarks.md names a missing test {name}"
