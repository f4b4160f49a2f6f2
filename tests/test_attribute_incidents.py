"""``attribute`` against a real Prometheus holding a recorded history with known faults.

The history (tests/support/incident_history.py) is backfilled with promtool: a CDN fault,
an LB fault 40 s later, a backend fault under memory pressure, and time before the probe
ran. Each ``--at`` must get its own incident, and the mechanism behind the suspects.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from t3probe.lab.view import clock_with_zone
from tests.support import incident_history as h
from tests.support.attribute import invoke, invoke_json, namespace
from tests.support.prom import HistoryPrometheus, prometheus_with_history


@dataclass
class Recorded:
    prom: HistoryPrometheus
    at: h.Times
    config: Path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    # Hours in the recent past: inside the default retention, clear of the head block.
    origin = float((int(time.time()) // 3600 - 3) * 3600)
    root: Path = tmp_path_factory.mktemp("incident-history")
    config = root / "probe.yaml"
    config.write_text(h.probe_config(), encoding="utf-8")
    with prometheus_with_history(h.openmetrics(origin), root) as prom:
        yield Recorded(prom, h.Times(origin), config)


async def ask(recorded: Recorded, at: float | str, **options: Any) -> tuple[int, dict[str, Any]]:
    options.setdefault("config", str(recorded.config))
    return await invoke_json(namespace(at, prometheus=recorded.prom.url, **options))


async def test_two_incidents_40_s_apart_answer_by_time(recorded: Recorded) -> None:
    at = recorded.at
    code, cdn = await ask(recorded, at(h.CDN + 5), window=120)
    assert code == 3, cdn
    assert cdn["suspects"] == ["wan", "cf_edge", "cf_tunnel"], cdn["incident"]
    assert cdn["incident"]["seconds_from_at"] == 0
    assert [leg["leg"] for leg in cdn["incident"]["legs"]] == ["cloudflare"]
    assert abs(cdn["incident"]["start"]["unix"] - at(h.CDN)) < 0.01

    code, lb = await ask(recorded, at(h.LB + 5))
    assert code == 3, lb
    assert lb["suspects"] == ["traefik", "dispatch"], lb["incident"]
    assert {leg["leg"]: leg["reasons"] for leg in lb["incident"]["legs"]} == {
        "cloudflare": ["reset"],
        "internal": ["reset"],
    }
    # The CDN incident is still in the default window, listed apart, not blended in.
    summaries = [incident["suspects"] for incident in lb["incidents"]]
    assert summaries == [["wan", "cf_edge", "cf_tunnel"], ["traefik", "dispatch"]]

    # The CDN leg's evidence still held when the LB fault began: a new incident all the
    # same, the CDN one ending where the LB one starts.
    assert cdn["incidents"][0]["end"]["unix"] == pytest.approx(lb["incident"]["start"]["unix"])
    code, again = await ask(recorded, at(h.LB - 2))
    assert again["suspects"] == ["wan", "cf_edge", "cf_tunnel"], again["incident"]

    # Before the backend incident: the nearest one, and how far.
    code, text_out, _ = await invoke(
        namespace(at(h.BACKEND - 10), prometheus=recorded.prom.url, config=str(recorded.config))
    )
    assert code == 3
    assert "suspect segment t3serve" in text_out
    assert "began 10 s after" in text_out and "(the nearest incident)" in text_out


async def test_a_slow_cdn_leg_reads_degraded_not_a_fault(recorded: Recorded) -> None:
    at = recorded.at
    cdn = ["wan", "cf_edge", "cf_tunnel"]
    code, doc = await ask(recorded, at(h.SLOW + 90))
    assert code == 5, doc
    assert (doc["outcome"], doc["verdict"], doc["suspects"]) == ("degraded", "degraded", cdn)
    incident = doc["incident"]
    assert incident["verdict"] == "degraded" and incident["seconds_from_at"] == 0
    assert incident["legs"] == [{"leg": "cloudflare", "status": "degraded", "reasons": []}]
    assert incident["start"]["unix"] == pytest.approx(at(h.SLOW), abs=0.01)
    # Three minutes slow outlast what is read past the window: still slow there.
    assert incident["ongoing"] is True
    # The suspects' evidence queries run for slowness too (memory pressure slows first).
    assert incident["evidence"] and "fired" not in {c["status"] for c in incident["evidence"]}
    legs = {leg["leg"]: leg for leg in doc["legs"]}
    assert legs["cloudflare"]["status"] == "degraded"
    assert legs["cloudflare"]["connected_throughout"] is True

    code, out, _ = await invoke(
        namespace(at(h.SLOW + 90), prometheus=recorded.prom.url, config=str(recorded.config))
    )
    assert code == 5
    assert (
        "verdict: degraded (slow, not down) — slow segments wan, cf_edge, cf_tunnel"
        " (degraded: leg cloudflare)"
    ) in out, out
    assert "infra fault" not in out

    # The scrape that saw it recovered, then the attribution window the probe holds it.
    code, doc = await ask(recorded, at(h.SLOW_END + 5))
    assert code == 5 and doc["incident"]["ongoing"] is False, doc["incident"]
    assert doc["incident"]["end"]["unix"] == pytest.approx(at(h.SLOW_END + 20), abs=0.01)

    # Without the config, the segments the probe itself found slow name the suspects.
    code, doc = await ask(recorded, at(h.SLOW + 90), config=None)
    assert code == 5, doc
    assert doc["suspects"] == ["cf_edge", "cf_tunnel", "wan"], doc["incident"]


async def test_a_hard_fault_after_slowness_is_a_fault_that_mentions_it(
    recorded: Recorded,
) -> None:
    at = recorded.at
    cdn = ["wan", "cf_edge", "cf_tunnel"]
    code, doc = await ask(recorded, at(h.SLOW_DROP + 3))
    assert code == 3, doc
    assert (doc["outcome"], doc["verdict"], doc["suspects"]) == ("infra_fault", "suspect", cdn)
    incident = doc["incident"]
    assert incident["start"]["unix"] == pytest.approx(at(h.SLOW_DROP), abs=0.01)
    assert incident["legs"] == [{"leg": "cloudflare", "status": "failing", "reasons": ["reset"]}]
    before = incident["slow_before"]
    assert before["suspects"] == cdn
    # First seen at the scrape after it began (scrapes fall on even seconds).
    assert before["start"]["unix"] == pytest.approx(at(h.SLOW_DROP - 30), abs=h.SCRAPE)
    assert before["end"]["unix"] == pytest.approx(at(h.SLOW_DROP), abs=0.01)
    code, out, _ = await invoke(
        namespace(at(h.SLOW_DROP + 3), prometheus=recorded.prom.url, config=str(recorded.config))
    )
    assert "verdict: infra fault — suspect segments wan, cf_edge, cf_tunnel" in out, out
    assert "  slow before it: wan, cf_edge, cf_tunnel degraded from " in out, out
    # Without the config: the probe's own convictions and slow segments, same story.
    code, doc = await ask(recorded, at(h.SLOW_DROP + 3), config=None)
    assert code == 3 and doc["suspects"] == ["cf_edge", "cf_tunnel", "wan"], doc["incident"]
    assert doc["incident"]["slow_before"]["suspects"] == ["cf_edge", "cf_tunnel", "wan"]
    # Asked inside the slowness before the drop: slow, and the fault follows.
    code, doc = await ask(recorded, at(h.SLOW_DROP - 5), window=30)
    assert code == 5 and doc["suspects"] == cdn, doc["incident"]
    assert [i["verdict"] for i in doc["incidents"]] == ["degraded", "suspect"]


async def test_without_the_config_the_probe_convictions_split_the_incidents(
    recorded: Recorded,
) -> None:
    at = recorded.at
    code, lb = await ask(recorded, at(h.LB + 5), config=None)
    assert code == 3, lb
    assert lb["suspects"] == ["dispatch", "traefik"], lb["incident"]
    assert {leg["leg"] for leg in lb["incident"]["legs"]} == {"cloudflare", "internal"}
    # The CDN fault stays its own incident, ending where the LB fault's first drop was.
    assert [i["suspects"] for i in lb["incidents"]] == [
        ["cf_edge", "cf_tunnel", "wan"],
        ["dispatch", "traefik"],
    ]
    assert lb["incident"]["start"]["unix"] == pytest.approx(at(h.LB), abs=0.01)
    code, cdn = await ask(recorded, at(h.CDN + 5), config=None)
    assert cdn["suspects"] == ["cf_edge", "cf_tunnel", "wan"], cdn["incident"]


async def test_evidence_queries_name_the_mechanism_or_say_not_available(recorded: Recorded) -> None:
    at = recorded.at
    code, doc = await ask(recorded, at(h.BACKEND + 5))
    assert code == 3 and doc["suspects"] == ["t3serve"], doc["incident"]
    checks = {check["name"]: check for check in doc["incident"]["evidence"]}
    memory = checks["memory_pressure"]
    assert memory["status"] == "fired" and memory["peak"] == pytest.approx(h.STALL_SHARE, 0.02)
    # rate()[1m] passes 10 % some 18 s into the stall (B - 30 s) and falls below it some
    # 42 s after its end (B + 60 s).
    assert at(h.BACKEND - 30) <= memory["start"]["unix"] <= at(h.BACKEND - 5)
    assert at(h.BACKEND + 60) <= memory["end"]["unix"] <= at(h.BACKEND + 110)
    assert checks["io_pressure"]["status"] == "not_available"
    assert checks["oom_kills"]["status"] == "quiet"

    code, out, _ = await invoke(
        namespace(at(h.BACKEND + 5), prometheus=recorded.prom.url, config=str(recorded.config))
    )
    start = dt.datetime.fromtimestamp(memory["start"]["unix"], dt.UTC)
    assert (
        f"t3serve suspected — memory pressure on the backend host stalled 34 % of wall time"
        f" (instance=backend:9100) from {start:%H:%M:%S}"
    ) in out, out
    assert "io_pressure: not available (no node_pressure_io_stalled_seconds_total" in out
    assert "look further: rate(node_pressure_memory_stalled_seconds_total" in out

    code, lb = await ask(recorded, at(h.LB + 5))
    checks = {(c["segment"], c["name"]): c for c in lb["incident"]["evidence"]}
    assert checks[("traefik", "pod_restarts_traefik")]["status"] == "fired"
    assert "pod=traefik-7d9" in checks[("traefik", "oom_killed_traefik")]["where"]
    assert checks[("traefik", "rollout_traefik")]["status"] == "not_available"
    # No dispatch containers in this cluster: not available, not clean.
    assert checks[("dispatch", "pod_restarts_dispatch")]["status"] == "not_available"

    # The traefik restart belongs to the LB fault: the CDN incident's tunnel is not blamed.
    code, cdn = await ask(recorded, at(h.CDN + 5))
    statuses = {c["name"]: c["status"] for c in cdn["incident"]["evidence"]}
    assert statuses["pod_restarts_cf_tunnel"] == "not_available", statuses
    assert "fired" not in statuses.values(), statuses


async def test_time_before_the_probe_ran_is_no_data(recorded: Recorded) -> None:
    code, doc = await ask(recorded, recorded.at(h.FIRST - 10))
    assert code == 4, doc
    assert doc["incident"] is None and doc["incidents"] == []
    assert doc["first_data"]["unix"] == pytest.approx(recorded.at(h.FIRST), abs=0.01)
    code, out, _ = await invoke(
        namespace(
            recorded.at(h.FIRST - 10), prometheus=recorded.prom.url, config=str(recorded.config)
        )
    )
    assert "no data before" in out and "infra fault" not in out


async def test_a_berlin_user_pasting_the_view_time_gets_the_right_incident(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        shown = clock_with_zone(recorded.at(h.CDN + 5))
        berlin = dt.datetime.fromtimestamp(recorded.at(h.CDN + 5), dt.UTC).astimezone(
            dt.datetime.now().astimezone().tzinfo
        )
        assert shown.endswith(berlin.strftime("%z")[:3] + ":" + berlin.strftime("%z")[3:])
        # As shown, with its offset, whatever --tz; and the bare clock with --tz local.
        for pasted, tz in ((shown, "UTC"), (shown.split(".")[0], "local")):
            code, doc = await ask(recorded, pasted, tz=tz)
            assert code == 3, (pasted, doc)
            assert doc["suspects"] == ["wan", "cf_edge", "cf_tunnel"], pasted
        code, out, _ = await invoke(
            namespace(
                shown.split(".")[0],
                prometheus=recorded.prom.url,
                config=str(recorded.config),
                tz="local",
            )
        )
        assert " CET" in out or " CEST" in out, out
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_bad_evidence_file_names_the_field(recorded: Recorded, tmp_path: Path) -> None:
    bad = tmp_path / "evidence.yaml"
    bad.write_text("evidence:\n  - name: x\n    segments: [t3serve]\n    query: up\n", "utf-8")
    code, out, err = await invoke(namespace("-1m", prometheus=recorded.prom.url, evidence=str(bad)))
    assert code == 2 and out == ""
    assert "evidence[0] (x).requires: expected a non-empty string" in err, err
