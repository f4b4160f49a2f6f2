"""``python -m tests.kernel.render``: run every truth-table row, write docs/kernel-faults.md.

::

    .venv/bin/python -m tests.kernel.render                 # run all rows (root), then render
    .venv/bin/python -m tests.kernel.render --from FILE     # render a results JSON only
    .venv/bin/python -m tests.kernel.render --rows a,b --out /tmp/r.json --page /tmp/p.md

Unlike the test module it also runs the pending rows, so the page shows what today's
code does for them. The results JSON (``tests/kernel/results/kernel-faults.json`` by
default) keeps the raw event timelines; the page is generated from it alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t3probe import netguard
from tests.kernel.runner import observe, parallelism, problems, run_rows
from tests.kernel.topology import LEGS, missing_prerequisites
from tests.kernel.truth import (
    BACKOFF_MAX,
    HEARTBEAT,
    ROWS,
    ROWS_BY_NAME,
    WATCHDOG,
    WINDOW,
    LegExpect,
    Row,
)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "kernel" / "results" / "kernel-faults.json"
PAGE = REPO / "docs" / "kernel-faults.md"


def _machine() -> dict[str, Any]:
    import aiohttp

    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


def run(rows: Sequence[Row], unit: float, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    results = run_rows(rows, unit)
    elapsed = time.monotonic() - started
    for row in rows:
        results[row.name]["problems"] = problems(row, results[row.name], unit)
    payload = {
        "date": datetime.date.today().isoformat(),
        "unit": unit,
        "parallel": parallelism(),
        "elapsed_seconds": round(elapsed, 1),
        "machine": _machine(),
        "rows": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return payload


# -- the page ---------------------------------------------------------------------------


def _expect_text(expect: LegExpect) -> str:
    text = "/".join(f"`{r}`" for r in expect.first)
    if expect.then:
        text += " → " + "/".join(f"`{r}`" for r in expect.then)
    return text if expect.required else f"maybe {text}"


def _legs_text(row: Row) -> str:
    if not row.legs:
        return "no leg drops"
    return "<br>".join(f"{name}: {_expect_text(e)}" for name, e in row.legs.items())


def _verdict_text(verdict: tuple[str, tuple[str, ...]] | None) -> str:
    if verdict is None:
        return "not asserted"
    name, suspects = verdict
    return f"`{name}`" + (f" {', '.join(suspects)}" if suspects else "")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _observed_legs(row: Row, seen: dict[str, Any]) -> str:
    parts = []
    for name, leg in seen["legs"].items():
        if not leg["drops"] and name not in row.legs:
            continue
        if not leg["drops"]:
            parts.append(f"{name}: none")
            continue
        reasons = " → ".join(f"`{r}`" for r in leg["reasons"])
        parts.append(f"{name}: {reasons} @{leg['first_down']:.1f}")
    return "<br>".join(parts) or "no leg drops"


def _today_text(row: Row) -> str:
    today = row.today
    if today is None:
        return ""
    legs = "<br>".join(
        f"{name}: " + (" → ".join(f"`{r}`" for r in reasons) if reasons else "none")
        for name, reasons in today.reasons.items()
    )
    verdict = f"`{today.verdict}`" + (f" {', '.join(today.suspects)}" if today.suspects else "")
    if today.unexplained:
        verdict += f" (unexplained: {', '.join(today.unexplained)})"
    note = f"<br>({today.note})" if today.note else ""
    return f"{legs}<br>verdict {verdict}{note}"


def _agrees_with_today(row: Row, seen: dict[str, Any]) -> bool:
    today = row.today
    if today is None:
        return False
    for name, reasons in today.reasons.items():
        if tuple(seen["legs"][name]["reasons"]) != reasons:
            return False
    held = seen["verdict_held"]
    return (
        held is not None
        and held["verdict"] == today.verdict
        and tuple(held["suspects"]) == today.suspects
    )


def _held_text(seen: dict[str, Any]) -> str:
    held = seen["verdict_held"]
    if held is None:
        return "—"
    text = f"`{held['verdict']}`"
    if held["suspects"]:
        text += " " + ", ".join(held["suspects"])
    if held["unexplained"]:
        text += f" (unexplained: {', '.join(held['unexplained'])})"
    return text


def _transients(row: Row, seen: dict[str, Any], heal: float) -> list[str]:
    """Convictions of segments other than the expected suspects, with when."""
    if row.verdict is not None:
        right = set(row.verdict[1])
    else:  # not asserted: anything on the faulted legs is at least plausible
        right = {s for leg in LEGS if leg.name in row.legs for s in leg.segments}
    wrong = []
    for t, verdict, suspects, _ in seen["verdicts_during"]:
        bad = [s for s in suspects if s not in right]
        if verdict == "suspect" and bad:
            when = "after healing" if t >= heal else "while the fault lasted"
            wrong.append(f"{', '.join(bad)} at {t:.1f} s ({when})")
    return wrong


def render(payload: dict[str, Any]) -> str:
    unit = float(payload["unit"])
    machine = payload["machine"]
    results: dict[str, Any] = payload["rows"]
    lines = [
        "# Real network faults: the truth table",
        "",
        "<!-- Generated by `python -m tests.kernel.render` from"
        " tests/kernel/results/kernel-faults.json; edit tests/kernel/truth.py, not this. -->",
        "",
        "The faults the lab and most tests inject come from a userspace TCP proxy. Real"
        " paths fail differently, so `tests/kernel/` builds a small network out of Linux"
        " network namespaces and breaks it with the kernel's own tools: nftables (drops,"
        " RSTs, ICMP errors, `numgen` loss, NAT), `tc tbf`, `ip link`, conntrack and"
        " signals. The probe under test is the real daemon (`t3probe run`) in its own"
        " namespace; the test process reads its JSON lines.",
        "",
        "```",
        "                    198.18.1.0/30           198.18.2.0/30",
        "              ca .2 ------------ .1 ac  as .1 ------------ .2 sa",
        "    client  <                        router_a                     >  server",
        "              cb .2 ------------ .1 bc  bs .1 ------------ .2 sb",
        "                    198.18.3.0/30    router_b (NAT)  198.18.4.0/30",
        "```",
        "",
        "| leg | route | segments |",
        "|---|---|---|",
    ]
    for leg in LEGS:
        lines.append(
            f"| `{leg.name}` | {leg.kind} `{leg.url}` via router {leg.router.upper()}"
            f" | {', '.join(leg.segments)} |"
        )
    lines += [
        "",
        "In the server namespace, `server` is `t3probe echo` on :8765, `backend` a second"
        " `t3probe echo` used as the HTTP target on 198.18.2.2:8080, `tls_server` the same"
        " echo behind TLS on :8443 (a throw-away CA from `t3probe.lab.pki`;"
        " `tests/kernel/tlsecho.py`, since `t3probe echo` has no TLS option). Router B"
        " masquerades towards the server and drops packets its connection table does not"
        " know, like a home or cloud edge.",
        "",
        "**Containment.** Addresses only from 198.18.0.0/15, only on veth interfaces inside"
        " namespaces the test made (`t3k-<pid>-<n>-<role>`); no default route anywhere;"
        " nothing added to the root namespace. Processes in the namespaces run with the"
        " network guard *widened*, not dropped: `T3PROBE_LOOPBACK_ONLY=1` plus"
        " `T3PROBE_ALLOWED_NETWORKS=198.18.0.0/15`. Teardown (fixture and `atexit`) stops"
        " only the processes it started, by PID, and deletes only its own namespaces.",
        "",
        f"**Timings** (scaled by `T3PROBE_TEST_TIME_UNIT`): heartbeat {HEARTBEAT:g} s, watchdog ="
        f" connect timeout {WATCHDOG:g} s, attribution window {WINDOW:g} s, backoff"
        f" 0.2 to {BACKOFF_MAX:g} s. Each row runs on a fresh topology; rows run"
        f" {payload['parallel']} at a time.",
        "",
        "**Running it.** `make test` includes it (as root; `scripts/bootstrap.sh --system`"
        " installs nftables, iproute2, conntrack). Alone:"
        " `.venv/bin/pytest tests/kernel` asserts the rows without `pending`;"
        " `.venv/bin/python -m tests.kernel.render` runs every row, pending ones too, and"
        " rewrites this page. Without root or the tools the tests skip with the reason"
        " (a failure under `CI=true`).",
        "",
        "## Expected (the truth table)",
        "",
        "Expectations are the correct behaviour. Rows marked *pending* fail today because"
        " of the defect named; they are not asserted until it is fixed. `→` separates the"
        " first drop's reason from later ones while the fault lasts (a change of failure"
        " mode counts again). Legs not listed must not drop.",
        "",
        "| row | fault | expected drops | expected verdict | detect ≤ s | recover ≤ s | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        status = "asserted" if row.pending is None else f"**pending**: {row.pending}"
        start = " (in place before the legs start)" if row.at_start else ""
        rtt = f"<br>RTT > 100 ms on {', '.join(row.rtt_inflated)}" if row.rtt_inflated else ""
        lines.append(
            f"| `{row.name}` | {row.title}{start} | {_legs_text(row)}{rtt}"
            f" | {_verdict_text(row.verdict)} | {row.detect_within * unit:g}"
            f" | {row.recover_within * unit:g} | {status} |"
        )
    lines += [
        "",
        "## Measured",
        "",
        f"One run on {payload['date']}: {machine['cpus']} CPUs, Linux {machine['kernel']},"
        f" Python {machine['python']}, aiohttp {machine['aiohttp']}, time unit {unit:g};"
        f" {len(results)} rows in {payload['elapsed_seconds']:.0f} s wall. Times in"
        " seconds from the fault (from the legs' start for rows in place before it);"
        " *@t* is the first drop. *Up* is heal → last leg up again (or back before the"
        " heal, through new flows), *clean* heal → verdict `infra_clean` again (—: never left,"
        " or already back).",
        "",
        "| row | observed drops | verdict held at heal (reached at) | up | clean"
        " | slow RTTs (> 100 ms) | matches the table |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in ROWS:
        result = results.get(row.name)
        if result is None:
            continue
        if result.get("error"):
            lines.append(f"| `{row.name}` | run failed | | | | | no |")
            continue
        seen = observe(row, result)
        found = result.get("problems", [])
        slow = ", ".join(
            f"{name} {int(leg['slow_rtts'])}"
            for name, leg in seen["legs"].items()
            if leg["slow_rtts"] >= 1
        )
        dropped = any(leg["drops"] for leg in seen["legs"].values())
        up_after = seen["legs_up_after_heal"]
        up = "—" if not dropped else "before heal" if up_after is None else f"{up_after:.1f}"
        reached = seen["verdict_reached"]
        held = _held_text(seen) + (f" ({reached:.1f})" if reached is not None else "")
        if row.pending is None:
            verdict = "yes" if not found else "**no**: " + "; ".join(found)
        else:
            verdict = f"pending ({len(found)} mismatch{'es' if len(found) != 1 else ''})"
        lines.append(
            f"| `{row.name}` | {_observed_legs(row, seen)} | {held}"
            f" | {up}"
            f" | {_seconds(seen['verdict_clean_after_heal'])} | {slow or '—'} | {verdict} |"
        )
        wrong = _transients(row, seen, float(result["heal_at"]))
        if wrong:
            notes.append(f"- `{row.name}`: transiently convicted {'; '.join(wrong)}.")
    lines += [
        "",
        "### Pending rows: what today's code reports",
        "",
        "As recorded in the table (`today`), next to the defect. The engineers fixing a"
        " defect delete `pending` and `today` from its rows to turn them on.",
        "",
        "| row | today | defect | this run agrees |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        if row.pending is not None:
            result = results.get(row.name)
            agrees = "not run"
            if result is not None and not result.get("error"):
                agrees = "yes" if _agrees_with_today(row, observe(row, result)) else "no"
            lines.append(f"| `{row.name}` | {_today_text(row)} | {row.pending} | {agrees} |")
    lines += [
        "",
        "### Transient wrong convictions",
        "",
        "Not asserted. Legs across one router do not fail, or recover, in the same"
        " heartbeat, and while only some of them count as failing, attribution convicts"
        " what their segments leave. Typically `backend`: http_a's GET and connect"
        " timeouts run about a heartbeat behind the WebSocket watchdogs, so after healing"
        " its last drop leaves the attribution window after theirs, and for that moment"
        " http_a fails alone. Seen in this run:",
        "",
        *(notes or ["- none"]),
        "",
        "## What one vantage point cannot tell apart",
        "",
    ]
    pairs_seen: set[frozenset[str]] = set()
    for row in ROWS:
        for other, why in row.same_as.items():
            pair = frozenset({row.name, other})
            if pair in pairs_seen:
                continue
            pairs_seen.add(pair)
            lines.append(f"- `{row.name}` and `{other}`: {why}.")
    lines += [
        "- `pmtu_blackhole_a`: no segment explains it. Small packets cross router A, so"
        " the plain legs exonerate it; tls_b exonerates the TLS server. The correct"
        " answer is `inconclusive`, not a guess.",
    ]
    lines += ["", "## Notes per row", ""]
    for row in ROWS:
        if row.notes:
            lines.append(f"- `{row.name}`: {row.notes}")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kernel.render", description=__doc__)
    parser.add_argument("--from", dest="source", type=Path, help="render this results JSON")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON to write")
    parser.add_argument("--page", type=Path, default=PAGE, help="Markdown page to write")
    args = parser.parse_args(argv)
    if args.source is not None:
        payload = json.loads(args.source.read_text())
    else:
        missing = missing_prerequisites()
        if missing is not None:
            print(f"cannot run the rows: {missing}", file=sys.stderr)
            return 2
        # This process only drives subprocesses; it keeps the loopback-only guard.
        netguard.install()
        unit = float(os.environ.get("T3PROBE_TEST_TIME_UNIT", "1.0"))
        names = args.rows.split(",") if args.rows else [row.name for row in ROWS]
        unknown = [name for name in names if name not in ROWS_BY_NAME]
        if unknown:
            print(f"unknown rows: {', '.join(unknown)}", file=sys.stderr)
            return 2
        payload = run([ROWS_BY_NAME[name] for name in names], unit, args.out)
        print(f"{len(names)} rows in {payload['elapsed_seconds']} s; results in {args.out}")
    args.page.write_text(render(payload))
    print(f"page written to {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
