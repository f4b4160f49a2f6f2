"""Every benchmark in its smallest mode, so they keep working; figures are not judged.

Only the shape of what each benchmark reports is asserted: the numbers exist, are
finite and non-negative, and the JSON file is written. Timing thresholds belong in
docs/benchmarks.md, not here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from benchmarks import (
    detection,
    dohclient,
    floor,
    floorclient,
    footprint,
    hardening,
    rtt,
    scale,
    startup,
)
from benchmarks.blackbox import blackbox_binary
from benchmarks.common import histogram_quantile, summary
from benchmarks.run import BENCHMARKS, main, run_one

pytestmark = [
    # Whole seconds: each benchmark spawns real processes and waits on real timers.
    pytest.mark.timeout(90),
    # Every benchmark compares against Debian's prometheus-blackbox-exporter.
    pytest.mark.e2e,
]


@pytest.fixture(scope="module", autouse=True)
def blackbox_installed() -> None:
    if blackbox_binary() is None:
        pytest.skip(
            "prometheus-blackbox-exporter is NOT INSTALLED: the benchmarks compare against it."
            " `make test` installs it when root (apt-get install prometheus-blackbox-exporter)"
        )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def _summary_ok(stats: dict[str, Any], n: int | None = None) -> None:
    assert set(stats) >= {"n", "min", "median", "p99", "max"}
    if n is not None:
        assert stats["n"] == n, stats
    if stats["n"]:
        assert all(_finite(stats[key]) for key in ("min", "median", "p99", "max")), stats
        assert stats["min"] <= stats["median"] <= stats["p99"] <= stats["max"]


def _run(name: str, options: Any, out: Path) -> dict[str, Any]:
    result = run_one(BENCHMARKS[name], options, out, "test")
    written = json.loads((out / f"{name}.json").read_text())
    assert written["benchmark"] == name
    assert written["machine"]["cpus"] >= 1
    return result


def test_detection_reports_every_fault_kind_for_every_tool(tmp_path: Path) -> None:
    options = detection.DetectionOptions(repetitions=1, heartbeat=0.5, watchdog=1.0)
    result = _run("detection", options, tmp_path)
    assert list(result["kinds"]) == list(detection.FAULT_KINDS)
    for kind, figures in result["kinds"].items():
        expected = detection.HTTP_DETECTORS if kind == "stall" else detection.PATH_DETECTORS
        assert set(figures["tools"]) == set(expected)
        for tool in figures["tools"].values():
            _summary_ok(tool["seconds"])
            assert tool["seconds"]["n"] + tool["missed"] == 1
        assert figures["median_ratios"]
        assert all(v is None or _finite(v) for v in figures["median_ratios"].values())
    # The one figure the benchmark exists for: t3probe saw the reset.
    assert result["kinds"]["reset"]["tools"]["t3probe_ws"]["seconds"]["n"] == 1


def test_rtt_reports_measured_minus_injected(tmp_path: Path) -> None:
    options = rtt.RttOptions(latencies_ms=(0.0, 5.0), seconds_per_latency=1.0)
    result = _run("rtt", options, tmp_path)
    assert list(result["latencies"]) == ["0", "5"]
    for figures in result["latencies"].values():
        for tool in rtt.TOOLS:
            _summary_ok(figures[tool]["measured_seconds"])
        assert figures["t3probe_ws"]["measured_seconds"]["n"] >= 1
        assert figures["blackbox_duration"]["measured_seconds"]["n"] >= 1
    # Latency is added, never removed: measured exceeds injected for every sample.
    assert result["latencies"]["5"]["t3probe_ws"]["error_seconds"]["min"] >= 0


def test_footprint_reports_cpu_and_rss_of_both_processes(tmp_path: Path) -> None:
    options = footprint.FootprintOptions(seconds=2.0, warmup_seconds=0.5, heartbeat=1.0)
    result = _run("footprint", options, tmp_path)
    processes = result["processes"]
    assert set(processes) == {"t3probe", "blackbox_exporter"}
    for figures in processes.values():
        for key in ("cpu_seconds", "cpu_percent_of_one_core", "rss_mean_mib", "rss_max_mib"):
            assert _finite(figures[key]), (key, figures)
        assert figures["rss_max_mib"] > 1
    assert processes["t3probe"]["exit_code"] == 0
    assert processes["t3probe"]["heartbeats_total"] >= 3
    assert processes["blackbox_exporter"]["probes_total"] >= 3


def test_scale_reports_each_level(tmp_path: Path) -> None:
    options = scale.ScaleOptions(
        levels=(5,),
        scraped_levels=(5,),
        cost_levels=(5,),
        event_cost_levels=(5,),
        window_seconds=1.5,
        warmup_seconds=0.5,
        big_legs=5,
        big_heartbeat=1.0,
    )
    result = _run("scale", options, tmp_path)
    [big] = result["big_level"]
    assert big["legs"] == 5 and big["all_up"] is True and big["scrape_in_window"] is True
    assert [c["legs"] for c in result["bookkeeping"]] == [5]
    assert _finite(result["bookkeeping"][0]["all_legs_up_events_seconds"])
    for series in ("levels", "scraped_levels"):
        [level] = result[series]
        assert level["legs"] == 5
        assert level["all_up"] is True
        assert isinstance(level["held"], bool)
        assert isinstance(level["false_drops"], int)
        for key in ("loop_lag_p99_seconds", "rtt_p99_seconds", "metrics_bytes"):
            assert _finite(level[key]), (key, level)
        assert _finite(level["probe"]["cpu_percent_of_one_core"])
        assert level["exit_code"] == 0


def test_hardening_reports_both_storms(tmp_path: Path) -> None:
    options = hardening.HardeningOptions(
        metrics_legs=5,
        scrapers=6,
        metrics_seconds=1.5,
        event_levels=(200,),
        flappers=10,
        event_clients=2,
        events_seconds=1.5,
        warmup_seconds=0.5,
    )
    result = _run("hardening", options, tmp_path)
    storms = [result["metrics_storm"], *result["events_storm"]]
    assert [level["event_buffer_size"] for level in result["events_storm"]] == [200]
    for storm in storms:
        assert "error" not in storm, storm
        assert isinstance(storm["false_drops"], int)
        assert _finite(storm["loop_lag_p99_seconds"]), storm
        assert sum(storm["healthz"]["statuses"].values()) >= 1
        assert storm["clients"]["requests"] >= 1
        _summary_ok(storm["clients"]["latency_seconds"])
        assert storm["exit_code"] == 0


def test_startup_reports_both_processes(tmp_path: Path) -> None:
    result = _run("startup", startup.StartupOptions(repetitions=1), tmp_path)
    for name in ("t3probe", "blackbox_exporter", "python_bare", "python_t3probe_imports"):
        _summary_ok(result["seconds"][name], n=1)
    assert _finite(result["median_ratio_t3probe_to_blackbox"])


def test_dohclient_reports_every_client(tmp_path: Path) -> None:
    result = _run("dohclient", dohclient.DohClientOptions(repetitions=1, lookups=3), tmp_path)
    for client in dohclient.CLIENTS:
        for figure in result["figures"][client].values():
            _summary_ok(figure, n=1)


def test_floor_reports_the_floor_and_t3probe_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--legs", "5", "--seconds", "3", "--warmup", "1", "--out", str(tmp_path)]
    assert floor.main(argv) == 0
    written = json.loads((tmp_path / "floor.json").read_text())
    assert written["benchmark"] == "floor"
    rows = {row["contender"]: row for row in written["contenders"]}
    assert list(rows) == list(floor.CONTENDERS)
    measured = ["floor", "t3probe_asyncio"]
    if written["uvloop"] is None:
        # The default install has no uvloop: its row says so instead of failing the run.
        assert rows["t3probe_uvloop"] == {
            "contender": "t3probe_uvloop",
            "skipped": "uvloop not installed",
        }
    else:
        measured.append("t3probe_uvloop")
    for name in measured:
        row = rows[name]
        assert "error" not in row, row
        assert row["legs"] == 5 and row["exit_code"] == 0
        assert row["cpu_seconds"] > 0, row
        for key in ("cpu_us_per_heartbeat", "ratio_to_floor", "heartbeats_answered", "rss_mib"):
            assert _finite(row[key]) and row[key] > 0, (key, row)
        assert isinstance(row["drops_in_window"], int)
    assert rows["floor"]["ratio_to_floor"] == 1.0
    # Each child runs on the loop it was asked for, as t3probe itself reports it.
    assert [rows[name]["event_loop"] for name in measured] == [
        "asyncio",
        "asyncio",
        "uvloop",
    ][: len(measured)]
    table = capsys.readouterr().out
    for name in floor.CONTENDERS:
        assert f"\n| {name} | " in table


def test_floor_refuses_bad_input_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        floor.main(["--legs", "0"])
    assert "--legs" in capsys.readouterr().err
    # Checked before anything is dialled.
    with pytest.raises(SystemExit):
        floorclient.main(["ws://192.0.2.1/probe/ws", "1"])
    assert "only dials loopback" in capsys.readouterr().err


def test_cli_lists_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in BENCHMARKS)
    assert main(["no_such_benchmark"]) == 2


def test_summary_and_histogram_quantile() -> None:
    assert summary([]) == {"n": 0, "min": None, "median": None, "p99": None, "max": None}
    stats = summary([3.0, 1.0, 2.0])
    assert (stats["min"], stats["median"], stats["p99"], stats["max"]) == (1.0, 2.0, 3.0, 3.0)
    # 10 observations in (0, 1], 10 in (1, 2]: the median sits on the first bound.
    buckets = {1.0: 10.0, 2.0: 20.0, math.inf: 20.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.75, buckets) == pytest.approx(1.5)
    assert histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None
