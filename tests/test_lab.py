"""The embedded default, exercised as a user runs it: scripted and by hand."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp
import pytest

from tests.support.env import TIME_UNIT
from tests.support.harness import free_port
from tests.support.lab import LAB_ENV, read_until


def test_every_scenario_matches_its_expected_verdict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "t3probe", "lab", "--scenario", "all", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=240 * TIME_UNIT,
        env=LAB_ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    from t3probe.lab.scenarios import SCENARIO_NAMES

    lines = result.stdout.splitlines()
    for name in SCENARIO_NAMES:
        assert (
            sum(line.startswith(name) and line.rstrip().count(" ok (") == 1 for line in lines) == 2
        ), name
    assert lines[-1] == f"{2 * len(SCENARIO_NAMES)} matched, 0 mismatched"


def test_unknown_scenario_is_refused_with_the_choices() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "t3probe", "lab", "--scenario", "meteor"],
        capture_output=True,
        text=True,
        timeout=30,
        env=LAB_ENV,
    )
    assert result.returncode == 2
    assert "unknown scenario 'meteor'" in result.stderr and "cdn_blackhole" in result.stderr


async def test_a_fault_injected_by_hand_convicts_the_right_segment() -> None:
    probe_port, control_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "t3probe",
        "lab",
        "--listen",
        f"127.0.0.1:{probe_port}",
        "--control",
        f"127.0.0.1:{control_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=LAB_ENV,
    )
    assert process.stdout is not None
    control = f"http://127.0.0.1:{control_port}/lab"
    try:
        await read_until(process.stdout, "verdict: infra_clean", 20)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{control}/fault/edge/blackhole") as response:
                assert response.status == 200
            await read_until(process.stdout, "verdict: suspect → wan, cf_edge, cf_tunnel", 15)
            async with session.post(f"{control}/fault/edge/meteor") as response:
                assert response.status == 400
                assert "edge has no fault 'meteor'" in (await response.json())["error"]
            async with session.delete(f"{control}/fault/edge") as response:
                assert response.status == 200
            await read_until(process.stdout, "verdict: infra_clean", 20)
            async with session.get(f"http://127.0.0.1:{probe_port}/metrics") as response:
                metrics = await response.text()
        assert 't3probe_disconnects_total{leg="cloudflare",reason="rtt_timeout"} 1.0' in metrics
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_every_scenario_given_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "t3probe", "lab", "--listen", "127.0.0.1:0",
         "--scenario", "baseline", "--scenario", "lb_refuse"],
        capture_output=True, text=True, timeout=120 * TIME_UNIT, env=LAB_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    ran = {line.split()[0] for line in result.stdout.splitlines()[1:-1]}
    assert ran == {"baseline", "lb_refuse"}
    assert result.stdout.splitlines()[-1] == "4 matched, 0 mismatched"


def test_scenarios_are_selected_in_order_once_each() -> None:
    from t3probe.lab.scenarios import SCENARIO_NAMES, select

    assert [s.name for s in select(["lb_refuse", "baseline", "lb_refuse"])] == [
        "lb_refuse",
        "baseline",
    ]
    assert [s.name for s in select(["lb_refuse", "all"])] == [
        "lb_refuse",
        *(name for name in SCENARIO_NAMES if name != "lb_refuse"),
    ]
    with pytest.raises(KeyError, match="meteor"):
        select(["baseline", "meteor"])
