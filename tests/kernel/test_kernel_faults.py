"""Real network faults, injected by the kernel, against the real daemon.

Every row of :mod:`tests.kernel.truth` runs on a fresh four-namespace topology
(:mod:`tests.kernel.topology`); rows run in parallel (``T3PROBE_TEST_KERNEL_PARALLEL``,
default 4) inside one module fixture, and each row is then judged by its own test.
``python -m tests.kernel.render`` runs the same rows and rewrites docs/kernel-faults.md.

Needs root, ``ip``, ``tc``, ``nft``, ``conntrack`` and ``openssl``; without them every
test here skips with the reason (a failure under ``CI=true``, see tests/conftest.py).
Set ``T3PROBE_TEST_KERNEL_RESULTS=FILE`` to keep the raw observations as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.render import payload_of
from tests.kernel.runner import problems, run_rows, tls_material
from tests.kernel.topology import (
    LEG_NAMES,
    ROLES,
    Timings,
    Topology,
    leg_states,
    missing_prerequisites,
)
from tests.kernel.truth import ROWS, ROWS_BY_NAME
from tests.support.env import TIME_UNIT

MISSING = missing_prerequisites()

pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=f"kernel faults: {MISSING}"),
    # The first test also pays for the whole parallel batch (about a minute at unit 1).
    pytest.mark.timeout(int(600 * TIME_UNIT)),
]


def _selected_rows(session: pytest.Session) -> list[str]:
    """The rows this session will judge (so ``-k`` runs only those)."""
    return [
        str(item.callspec.params["row_name"])
        for item in session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and item.module is not None
        and item.module.__name__ == __name__
        and "row_name" in item.callspec.params
    ]


@pytest.fixture(scope="module")
def kernel_results(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    rows = [ROWS_BY_NAME[name] for name in _selected_rows(request.session)]
    started = time.monotonic()
    results = run_rows(rows, TIME_UNIT)
    elapsed = time.monotonic() - started
    target = os.environ.get("T3PROBE_TEST_KERNEL_RESULTS")
    if target:
        # The page's format: `python -m tests.kernel.render --from FILE` renders it.
        Path(target).write_text(json.dumps(payload_of(results, TIME_UNIT, elapsed), indent=1))
    return results


@pytest.mark.parametrize("row_name", [row.name for row in ROWS])
def test_fault_row(row_name: str, kernel_results: dict[str, dict[str, Any]]) -> None:
    row = ROWS_BY_NAME[row_name]
    result = kernel_results[row_name]
    found = problems(row, result, TIME_UNIT)
    timeline = "\n".join(
        f"  {e['t']:7.2f} {e['leg']:7} {e['kind']:4} {e['reason']} {e['detail'][:90]}"
        for e in result.get("events", [])
    )
    verdicts = "\n".join(
        f"  {v['t']:7.2f} {v['verdict']} {v['suspects']} unexplained={v['unexplained']}"
        for v in result.get("verdicts", [])
    )
    assert not found, (
        f"{row.name}: {row.title}\n- " + "\n- ".join(found) + f"\nheal at {result.get('heal_at')}"
        f"\nevents:\n{timeline}\nverdicts:\n{verdicts}"
    )


def _root_links() -> list[str]:
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(line.split(":")[1].strip() for line in done.stdout.splitlines())


def _netns() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def test_topology_is_contained_and_teardown_leaves_nothing(tmp_path: Path) -> None:
    links_before = _root_links()
    with tls_material(tmp_path) as tls_files:
        topo = Topology(tmp_path / "topo", Timings.scaled(TIME_UNIT), tls_files)
        try:
            topo.create()
            topo.start_servers()
            probe = topo.start_probe()
            assert probe.wait_until(
                lambda lines: (
                    set(leg_states(lines).values()) == {"up"}
                    and len(leg_states(lines)) == len(LEG_NAMES)
                ),
                20 * TIME_UNIT,
            ), probe.log_tail()
            # Nothing in the root namespace; no default route in ours; only 198.18/15.
            assert _root_links() == links_before
            for role in ROLES:
                assert topo.run(role, "ip", "route", "show", "default").stdout.strip() == ""
                addresses = topo.run(role, "ip", "-o", "-4", "addr", "show").stdout
                for line in addresses.splitlines():
                    address = line.split()[3]
                    assert address.startswith("127.") or address.startswith("198.18."), line
            pids = [process.pid for process in topo.processes]
        finally:
            topo.close()
        topo.close()  # idempotent
    assert not set(topo.ns.values()) & _netns()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    assert _root_links() == links_before
