"""Runs truth-table rows on fresh topologies and judges what the probe reported.

:func:`run_rows` runs rows in parallel, each on a topology of its own (a few seconds to
build), so rows never leak state into each other. :func:`observe` turns a run into
plain figures (the docs page shows them); :func:`problems` compares them with the row.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from t3probe.degradation import DegradationPolicy
from t3probe.lab.pki import make_pki
from tests.kernel.topology import (
    LEG_NAMES,
    SERVER_A,
    SERVER_B,
    Timings,
    Topology,
    last_verdict,
    leg_states,
    topology,
)
from tests.kernel.truth import HEARTBEAT, VERDICT_REFRESH, WINDOW, Row, may_name

DEFAULT_PARALLEL = 4
BASELINE_TIMEOUT = 20.0
# The degradation warm-up (DegradationPolicy.warmup) plus one.
BASELINE_ANSWERS = DegradationPolicy().warmup
SLOW_RTT = "0.1"
_BUCKET = re.compile(
    r'^t3probe_rtt_seconds_(bucket|count)\{(?:le="([^"]+)",)?leg="([a-z_]+)"\} (\S+)$'
)


# What the probe logs per leg: drops, recoveries and failed reconnects while down.
LEG_EVENT_KINDS = ("up", "down", "reconnect_failed")


def parallelism() -> int:
    return max(1, int(os.environ.get("T3PROBE_TEST_KERNEL_PARALLEL", DEFAULT_PARALLEL)))


@contextlib.contextmanager
def tls_material(directory: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A throw-away CA and a leaf for both server addresses: (ca, cert, key)."""
    pki = make_pki(directory / "pki", [], [SERVER_A, SERVER_B])
    yield pki.ca_cert, pki.cert, pki.key


def _all_clean(lines: list[dict[str, Any]]) -> bool:
    states = leg_states(lines)
    verdict = last_verdict(lines)
    return (
        len(states) == len(LEG_NAMES)
        and set(states.values()) == {"up"}
        and verdict is not None
        and verdict.get("verdict") == "infra_clean"
    )


def _slow_rtts(topo: Topology) -> dict[str, float]:
    """Heartbeat round trips above 100 ms so far, per leg (from the probe's /metrics)."""
    counts: dict[str, float] = {}
    below: dict[str, float] = {}
    for line in topo.fetch("/metrics").splitlines():
        match = _BUCKET.match(line)
        if match is None:
            continue
        kind, le, leg, value = match.groups()
        if kind == "count":
            counts[leg] = float(value)
        elif le == SLOW_RTT:
            below[leg] = float(value)
    return {leg: counts[leg] - below.get(leg, 0.0) for leg in counts}


def _wait_for_baselines(topo: Topology, timeout: float) -> bool:
    """Every leg has answered more heartbeats than the degradation warm-up needs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = {}
        for line in topo.fetch("/metrics").splitlines():
            match = _BUCKET.match(line)
            if match is not None and match.group(1) == "count":
                counts[match.group(3)] = float(match.group(4))
        if len(counts) == len(LEG_NAMES) and min(counts.values()) > BASELINE_ANSWERS:
            return True
        time.sleep(0.2)
    return False


def run_row(
    row: Row, workdir: Path, tls_files: tuple[Path, Path, Path], unit: float
) -> dict[str, Any]:
    """Build a topology, inject the row's fault, heal it, and record what was seen."""
    timings = Timings.scaled(unit)
    result: dict[str, Any] = {"row": row.name, "unit": unit, "error": None}
    started = time.monotonic()
    topo_ref: list[Topology] = []
    try:
        with topology(workdir / row.name, timings, tls_files) as topo:
            topo_ref.append(topo)
            result.update(_drive(row, topo, unit))
    except Exception:  # noqa: BLE001 - any failure is recorded as the row's result
        result["error"] = traceback.format_exc()[-3000:]
        if topo_ref and topo_ref[0].probe is not None:
            result["probe_log"] = topo_ref[0].probe.log_tail()
    result["wall_seconds"] = round(time.monotonic() - started, 2)
    return result


def _drive(row: Row, topo: Topology, unit: float) -> dict[str, Any]:
    with contextlib.ExitStack() as fault:
        if row.at_start:
            fault_at = time.time()
            fault.enter_context(row.fault(topo))
            probe = topo.start_probe()
            if not probe.wait_until(lambda lines: bool(leg_states(lines)), BASELINE_TIMEOUT):
                raise RuntimeError(f"no leg event from the probe: {probe.log_tail()}")
            first = min(
                float(line["at"]) for line in probe.snapshot() if line.get("kind") in ("up", "down")
            )
            reference = first
            slow_before: dict[str, float] = {}
        else:
            probe = topo.start_probe()
            if not probe.wait_until(_all_clean, BASELINE_TIMEOUT * unit):
                raise RuntimeError(
                    f"baseline never clean: {probe.snapshot()[-10:]} {probe.log_tail()}"
                )
            # Slowness is judged against a learnt baseline: a fault injected before it
            # exists would be learnt as normal.
            if not _wait_for_baselines(topo, BASELINE_TIMEOUT * unit):
                raise RuntimeError(f"baselines never learnt: {probe.log_tail()}")
            slow_before = _slow_rtts(topo)
            fault_at = reference = time.time()
            fault.enter_context(row.fault(topo))
        # Heal at a random phase of the heartbeat: recovery must hold whichever leg
        # happens to come back first.
        jitter = random.uniform(0.0, HEARTBEAT * unit)
        time.sleep(max(0.0, reference + row.hold * unit + jitter - time.time()))
        slow_after = _slow_rtts(topo)
        heal_at = time.time()
    healed_at = time.time()
    # Every leg up and the verdict clean again, or the bound (plus a little) has passed.
    clean_bound = (row.recover_within + WINDOW + VERDICT_REFRESH) * unit
    probe.wait_until(_all_clean, clean_bound + 1.5 * unit)
    time.sleep(0.2)
    end_at = time.time()
    lines = probe.snapshot()
    return {
        "reference": "legs_start" if row.at_start else "fault",
        "fault_at": round(fault_at - reference, 3),
        "heal_at": round(heal_at - reference, 3),
        "healed_at": round(healed_at - reference, 3),
        "end_at": round(end_at - reference, 3),
        "events": [
            {
                "t": round(float(line["at"]) - reference, 3),
                "leg": line["leg"],
                "kind": line["kind"],
                "reason": line.get("reason"),
                "detail": str(line.get("detail", ""))[:200],
            }
            for line in lines
            if line.get("kind") in LEG_EVENT_KINDS and float(line["at"]) >= reference - 0.001
        ],
        "verdicts": [
            {
                "t": round(float(line["at"]) - reference, 3),
                "verdict": line["verdict"],
                "suspects": list(line.get("suspects", [])),
                "unexplained": list(line.get("unexplained", [])),
            }
            for line in lines
            if line.get("kind") == "verdict"
        ],
        "slow_rtts": {
            leg: slow_after.get(leg, 0.0) - slow_before.get(leg, 0.0) for leg in LEG_NAMES
        },
    }


def run_rows(
    rows: Sequence[Row], unit: float, parallel: int | None = None
) -> dict[str, dict[str, Any]]:
    """Run rows concurrently, each on its own topology; results by row name."""
    workers = parallel or parallelism()
    with tempfile.TemporaryDirectory(prefix="t3k-") as tmp:
        workdir = Path(tmp)
        with tls_material(workdir) as tls_files:
            # Longest first, so the pool finishes together.
            ordered = sorted(rows, key=lambda row: -(row.hold + row.recover_within))
            with concurrent.futures.ThreadPoolExecutor(workers, "t3k-row") as pool:
                futures = {
                    row.name: pool.submit(run_row, row, workdir, tls_files, unit) for row in ordered
                }
                return {row.name: futures[row.name].result() for row in rows}


# -- judging --------------------------------------------------------------------------


def observe(row: Row, result: dict[str, Any]) -> dict[str, Any]:
    """Plain figures from a run: per leg reasons and times, verdicts, recovery."""
    if result.get("error"):
        return {"error": result["error"]}
    heal = float(result["heal_at"])
    # Recovery counts from the heal's completion: a restarted process must be serving.
    healed = float(result.get("healed_at", heal))
    events = result["events"]
    legs: dict[str, dict[str, Any]] = {}
    for name in LEG_NAMES:
        mine = [e for e in events if e["leg"] == name]
        downs = [e for e in mine if e["kind"] == "down"]
        ups_after = [e for e in mine if e["kind"] == "up" and e["t"] >= heal]
        # A failed reconnect is no drop, but its reason is part of what the leg saw.
        failing = [e for e in mine if e["kind"] in ("down", "reconnect_failed")]
        reasons: list[str] = []
        for event in failing:
            if event["reason"] not in reasons:
                reasons.append(event["reason"])
        last = mine[-1]["kind"] if mine else None
        legs[name] = {
            "drops": len(downs),
            "reasons": reasons,
            "first_down": downs[0]["t"] if downs else None,
            "first_reason": downs[0]["reason"] if downs else None,
            "first_detail": downs[0]["detail"] if downs else None,
            "up_after_heal": (ups_after[0]["t"] - healed) if ups_after and downs else None,
            "up_at_end": last == "up" or (last is None and not row.at_start),
            "slow_rtts": result["slow_rtts"].get(name, 0.0),
        }
    verdicts = result["verdicts"]
    before_heal = [v for v in verdicts if v["t"] <= heal]
    held = before_heal[-1] if before_heal else None
    expected = row.verdict
    reached = None
    if expected is not None:
        for verdict in verdicts:
            if verdict["t"] >= 0 and (verdict["verdict"], tuple(verdict["suspects"])) == expected:
                reached = verdict["t"]
                break
    clean_after = [
        v["t"] - healed for v in verdicts if v["t"] >= heal and v["verdict"] == "infra_clean"
    ]
    downs_after_heal = [e for e in events if e["kind"] == "down" and e["t"] >= heal]
    ups = [e["t"] for e in events if e["kind"] == "up" and e["t"] >= heal]
    return {
        "legs": legs,
        "verdict_held": None
        if held is None
        else {
            "verdict": held["verdict"],
            "suspects": held["suspects"],
            "unexplained": held["unexplained"],
        },
        "verdict_reached": reached,
        "verdicts_during": [
            (v["t"], v["verdict"], v["suspects"], v["unexplained"]) for v in verdicts if v["t"] >= 0
        ],
        "verdict_clean_after_heal": clean_after[0] if clean_after else None,
        # None: every leg that dropped was already back before the heal.
        "legs_up_after_heal": max(ups) - healed if ups else None,
        "drops_after_heal": len(downs_after_heal),
        "all_up_at_end": all(leg["up_at_end"] for leg in legs.values()),
        "final_verdict": verdicts[-1]["verdict"] if verdicts else None,
    }


def problems(row: Row, result: dict[str, Any], unit: float) -> list[str]:
    """Everything about a run that contradicts the row; empty when the row holds."""
    if result.get("error"):
        return [f"the run failed: {result['error']}"]
    seen = observe(row, result)
    found: list[str] = []
    for name, leg in seen["legs"].items():
        expect = row.legs.get(name)
        if expect is None:
            if leg["drops"]:
                found.append(
                    f"{name} does not cross the fault but dropped: {leg['reasons']}"
                    f" (first: {leg['first_detail']})"
                )
            continue
        if leg["drops"] == 0:
            if expect.required:
                found.append(f"{name} never dropped (expected {'/'.join(expect.first)})")
            continue
        if expect.required and leg["first_down"] > row.detect_within * unit:
            found.append(
                f"{name} first dropped after {leg['first_down']:.2f}s,"
                f" beyond {row.detect_within * unit:.2f}s"
            )
        if leg["first_reason"] not in expect.first:
            found.append(
                f"{name} first dropped with {leg['first_reason']}, expected"
                f" {'/'.join(expect.first)} ({leg['first_detail']})"
            )
        later = set(leg["reasons"][1:])
        if expect.then_required and not later & set(expect.then):
            found.append(
                f"{name} never failed again with {'/'.join(expect.then)}: {leg['reasons']}"
            )
        unexpected = [r for r in leg["reasons"] if r not in expect.allowed]
        if unexpected:
            found.append(f"{name} also dropped with {unexpected}, allowed {sorted(expect.allowed)}")
    found.extend(_stray_verdicts(row, seen["verdicts_during"], unit))
    if row.verdict is not None:
        verdict, suspects = row.verdict
        if verdict == "infra_clean" and not suspects:
            changes = [v for v in seen["verdicts_during"] if v[1] != "infra_clean"]
            if changes:
                found.append(f"the verdict left infra_clean: {changes}")
        else:
            bound = (row.detect_within + VERDICT_REFRESH) * unit
            reached = seen["verdict_reached"]
            if reached is None:
                found.append(
                    f"the verdict never became {verdict} {list(suspects)}:"
                    f" {seen['verdicts_during']}"
                )
            elif reached > bound:
                found.append(
                    f"verdict {verdict} {list(suspects)} after {reached:.2f}s > {bound:.2f}s"
                )
            held = seen["verdict_held"]
            if held is None or (held["verdict"], tuple(held["suspects"])) != row.verdict:
                found.append(
                    f"the verdict at heal time was {held}, expected {verdict} {list(suspects)}"
                )
    for name in row.rtt_inflated:
        leg = seen["legs"][name]
        # Under random loss a leg may spend the fault reconnecting: a leg that dropped
        # has shown the loss already, one that stayed up must show it in its round trips.
        if leg["slow_rtts"] < 1 and not leg["drops"]:
            found.append(f"{name} showed no heartbeat round trip above {SLOW_RTT}s")
    if not seen["all_up_at_end"]:
        found.append(
            "not every leg was up again after healing: "
            + ", ".join(n for n, leg in seen["legs"].items() if not leg["up_at_end"])
        )
    elif (seen["legs_up_after_heal"] or 0.0) > row.recover_within * unit:
        found.append(
            f"legs took {seen['legs_up_after_heal']:.2f}s to recover,"
            f" beyond {row.recover_within * unit:.2f}s"
        )
    clean = seen["verdict_clean_after_heal"]
    clean_bound = (row.recover_within + WINDOW + VERDICT_REFRESH) * unit
    if seen["final_verdict"] != "infra_clean":
        found.append(f"the verdict did not return to infra_clean (last: {seen['final_verdict']})")
    elif clean is not None and clean > clean_bound:
        found.append(
            f"the verdict was clean again only {clean:.2f}s after healing > {clean_bound:.2f}s"
        )
    return found


def _stray_verdicts(
    row: Row, verdicts: list[tuple[float, str, list[str], list[str]]], unit: float
) -> list[str]:
    """Verdicts from the fault to the end of recovery that suspect nobody, or name a
    segment the fault does not lie on (rows that assert no verdict and name no faulted
    segments say why).

    A verdict replaced at the very next refresh is not judged for its segments: legs
    that fail a few milliseconds apart can straddle a refresh, and the one that failed
    first is then honestly explained by every segment it crosses (a tie) until the
    others report, half a second later. Such a transient is reported by the page.
    """
    found = []
    allowed = may_name(row)
    transient = (VERDICT_REFRESH + 0.1) * unit
    for index, (t, verdict, suspects, _) in enumerate(verdicts):
        if verdict == "suspect" and not suspects:
            found.append(f"the verdict at {t:.2f}s was suspect with nobody suspected")
        later = verdicts[index + 1][0] if index + 1 < len(verdicts) else None
        if later is not None and later - t < transient:
            continue
        stray = [segment for segment in suspects if segment not in allowed]
        if stray and (row.verdict is not None or row.faulted is not None):
            found.append(
                f"the verdict at {t:.2f}s named {stray}, which the fault does not touch"
                f" (it lies on {sorted(allowed)})"
            )
    return found
