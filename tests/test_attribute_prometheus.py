"""``t3probe attribute --prometheus`` against a real Prometheus scraping a live probe.

One test function walks one timeline, so one Prometheus serves every check: a quiet
stretch (clean), a fault injected at a known time (attributed), a window before the probe
existed (no data), and the ways a source can fail.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import pytest

from t3probe.attribute.http import session
from t3probe.attribute.model import SourceError
from t3probe.attribute.prometheus import PrometheusAPI
from t3probe.attribute.verdict import CLEAN_SENTENCE, NO_DATA_SENTENCE
from tests.support.attribute import (
    PATH_REASONS,
    Topology,
    inject_edge_fault,
    invoke,
    invoke_json,
    namespace,
)
from tests.support.env import TIME_UNIT
from tests.support.harness import free_port
from tests.support.prom import Prometheus, running_prometheus

SUBPROCESS_TIMEOUT_SECONDS = 30.0

pytestmark = pytest.mark.e2e


async def _scraped(prom: Prometheus, samples: int) -> None:
    await prom.wait_for(
        f'count_over_time(t3probe_connected{{leg="core"}}[1m]) >= {samples}',
        timeout=samples + 20.0,
    )


async def _cli(*args: str) -> tuple[int, str, str]:
    """``python -m t3probe attribute ...`` without blocking the loop the probe runs on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "t3probe",
        "attribute",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(SUBPROCESS_TIMEOUT_SECONDS * TIME_UNIT):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_attribute_from_prometheus(topology: Topology) -> None:
    async with running_prometheus([f"127.0.0.1:{topology.probe.probe.port}"]) as prom:
        await _scraped(prom, 6)

        quiet = time.time()
        code, doc = await invoke_json(namespace(quiet - 1.0, window=3.0, prometheus=prom.url))
        assert code == 0, doc
        assert doc["summary"] == CLEAN_SENTENCE and doc["suspects"] == []
        for leg in doc["legs"]:
            assert leg["connected_throughout"] is True and leg["drops"] == {}, leg
            assert leg["rtt_seconds"]["during"]["p50"] is not None, leg

        fault = await inject_edge_fault(topology)
        await prom.wait_for('t3probe_segment_suspected{segment="edge"} == 1')
        await asyncio.sleep(2.5 * TIME_UNIT)  # a couple more scrapes of the broken state
        code, doc = await invoke_json(namespace(fault + 1.0, window=6.0, prometheus=prom.url))
        assert code == 3, doc
        assert doc["outcome"] == "infra_fault"
        assert doc["failing_legs"] == ["edge"]
        assert sorted(doc["suspects"]) == ["edge", "wan"]
        legs = {leg["leg"]: leg for leg in doc["legs"]}
        assert legs["edge"]["connected_throughout"] is False
        assert legs["edge"]["drops"] and set(legs["edge"]["drops"]) <= PATH_REASONS
        # The exact time of the drop, from t3probe_last_disconnect_timestamp_seconds.
        times = [drop["at"]["unix"] for drop in legs["edge"]["drop_events"]]
        assert times and all(fault <= at <= fault + 2.0 * TIME_UNIT for at in times), times
        for name in ("core", "backend"):
            assert legs[name]["connected_throughout"] is True and legs[name]["drops"] == {}

        # The same window through the real command line, as a human reads it.
        code, out, err = await _cli(
            "--at", f"{fault + 1.0:.3f}", "--window", "6", "--prometheus", prom.url
        )
        assert code == 3, out + err
        lines = out.rstrip().splitlines()
        assert lines[1].split()[:3] == ["LEG", "CONNECTED", "DROPS"]
        assert any(line.split()[:2] == ["edge", "no"] for line in lines)
        verdict = lines.index(
            "verdict: infra fault — suspect segments edge, wan (failing: leg edge)"
        )
        # The answer is the incident covering TIME, with its span and the legs behind it.
        assert lines[verdict + 1].startswith("  incident "), out
        assert "covers" in lines[verdict + 1] and "edge failing" in lines[verdict + 1], out

        code, out, _ = await invoke(
            namespace(topology.started - 120, window=10, prometheus=prom.url)
        )
        assert code == 4, out
        assert out.rstrip().splitlines()[-1] == f"verdict: {NO_DATA_SENTENCE}"
        assert "none in the window" in out

        await _source_errors(prom, topology)


async def _source_errors(prom: Prometheus, probe: Topology) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    code, _, err = await invoke(namespace("-10s", prometheus=unreachable))
    assert code == 1 and f"cannot reach Prometheus at {unreachable}/api/v1/query" in err, err

    # Something answers, but it is not Prometheus: the probe's own HTTP surface.
    code, _, err = await invoke(namespace("-10s", prometheus=probe.probe_url))
    assert code == 1 and "no Prometheus HTTP API" in err, err

    async with session() as client:
        with pytest.raises(SourceError, match=r"rejected a query \(bad_data\).*parse error"):
            await PrometheusAPI(client, prom.url).query("sum(", time.time())

    code, out, err = await _cli("--at", "teatime", "--prometheus", prom.url)
    assert code == 2 and out == "" and "cannot parse TIME 'teatime'" in err


async def test_prometheus_helper_stops_its_server_by_pid() -> None:
    async with running_prometheus([]) as prom:
        assert prom.process.poll() is None
    assert prom.process.returncode is not None
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as client, client.get(f"{prom.url}/-/ready"):
            pass
