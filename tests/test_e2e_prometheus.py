"""End to end with a real Prometheus scraping `t3probe lab` with the shipped rules.

A fault injected in the lab must show in Prometheus as operators will see it: the leg's
``t3probe_connected`` drops, the disconnect counter rises with the right reason, and
alerts go pending. Every query printed in the runbook and the dashboard must run.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import aiohttp
import pytest

from tests.support.artifacts import RULES
from tests.support.env import TIME_UNIT
from tests.support.harness import free_port
from tests.support.lab import LAB_ENV, read_until
from tests.support.ops_queries import dashboard_queries, runbook_queries, scaling_queries
from tests.support.prom import Prometheus, running_prometheus

pytestmark = pytest.mark.e2e


async def _value(prom: Prometheus, expr: str) -> float | None:
    result = await prom.query(expr)
    return float(result[0]["value"][1]) if result else None


async def _until(prom: Prometheus, expr: str, predicate: Any, seconds: float) -> float:
    async with asyncio.timeout(seconds * TIME_UNIT):
        while True:
            value = await _value(prom, expr)
            if value is not None and predicate(value):
                return value
            await asyncio.sleep(0.5)


async def _alert_states(prom: Prometheus) -> dict[str, set[str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{prom.url}/api/v1/alerts") as response,
    ):
        body = await response.json()
    states: dict[str, set[str]] = {}
    for alert in body["data"]["alerts"]:
        states.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
    return states


async def test_lab_fault_seen_through_prometheus_and_every_documented_query_runs() -> None:
    probe_port, control_port = free_port(), free_port()
    lab = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "lab",
        "--listen", f"127.0.0.1:{probe_port}", "--control", f"127.0.0.1:{control_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=LAB_ENV,
    )  # fmt: skip
    assert lab.stdout is not None
    try:
        await read_until(lab.stdout, "verdict: infra_clean", 20)
        async with running_prometheus([f"127.0.0.1:{probe_port}"], rule_files=[RULES]) as prom:
            await _until(prom, 'min(t3probe_connected{job="t3probe"})', lambda v: v == 1, 20)
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{control_port}/lab/fault/lb/refuse"
                async with session.post(url) as response:
                    assert response.status == 200
            await _until(prom, 't3probe_connected{leg="internal"}', lambda v: v == 0, 15)
            await _until(
                prom, 't3probe_disconnects_total{leg="internal",reason="reset"}',
                lambda v: v >= 1, 15,
            )  # fmt: skip
            await _until(prom, 't3probe_segment_suspected{segment="traefik"}', lambda v: v == 1, 15)
            async with asyncio.timeout(20 * TIME_UNIT):
                while True:
                    states = await _alert_states(prom)
                    if {"T3ProbeLegDown", "T3ProbeSegmentSuspected"} <= states.keys():
                        break
                    await asyncio.sleep(0.5)
            assert states["T3ProbeLegDown"] & {"pending", "firing"}
            assert "T3ProbeAbsent" not in states
            # The backend leg does not cross the LB: it must stay up throughout.
            t3serve_up = await _value(prom, 't3probe_connected{leg="t3serve"}')
            assert t3serve_up == 1
            failures = []
            for expr in [*runbook_queries(), *dashboard_queries(), *scaling_queries()]:
                try:
                    await prom.query(expr)
                except AssertionError as err:
                    failures.append(f"{expr}: {err}")
            assert not failures, "\n".join(failures)
    finally:
        if lab.returncode is None:
            lab.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(10):
                    await lab.wait()
            except TimeoutError:
                lab.kill()
                await lab.wait()
