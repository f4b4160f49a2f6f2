"""``t3probe attribute --events`` against a live in-process probe and real peers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from t3probe.attribute.cli import run_attribute
from t3probe.attribute.model import Window
from t3probe.attribute.sources import from_events
from t3probe.attribute.verdict import CLEAN_SENTENCE, NO_DATA_SENTENCE
from t3probe.events import LegEvent
from tests.support.attribute import (
    PATH_REASONS,
    Topology,
    inject_edge_fault,
    invoke,
    invoke_json,
    namespace,
)
from tests.support.env import TIME_UNIT
from tests.support.harness import (
    Peer,
    eventually,
    free_port,
    leg,
    probe_config,
    running_probe,
)


async def test_events_source_answers_clean_fault_and_no_data(topology: Topology) -> None:
    await asyncio.sleep(1.0 * TIME_UNIT)
    now = time.time()
    code, out, err = await invoke(namespace(now - 0.1, window=0.4, events=topology.probe_url))
    assert code == 0, out + err
    assert out.rstrip().splitlines()[-1] == f"verdict: {CLEAN_SENTENCE}"

    fault = await inject_edge_fault(topology)
    await asyncio.sleep(0.3 * TIME_UNIT)
    # The /events URL itself, as the runbook shows it, works as well as the base URL.
    code, doc = await invoke_json(
        namespace(fault + 0.2, window=1.0, events=f"{topology.probe_url}/events")
    )
    assert code == 3, doc
    assert doc["outcome"] == "infra_fault" and doc["failing_legs"] == ["edge"]
    legs = {leg["leg"]: leg for leg in doc["legs"]}
    assert legs["edge"]["connected_throughout"] is False
    assert legs["core"]["connected_throughout"] is True and legs["core"]["drops"] == {}
    assert legs["backend"]["connected_throughout"] is True
    drops = legs["edge"]["drop_events"]
    assert drops and set(legs["edge"]["drops"]) <= PATH_REASONS
    # /events places the drop to the millisecond, right after the peer went away.
    assert fault <= drops[0]["at"]["unix"] <= fault + 1.0 * TIME_UNIT
    # /verdict lists each leg's segments, so the probe's own engine names the suspects.
    assert doc["suspects"] == ["wan", "edge"]
    assert doc["summary"] == "infra fault — suspect segments wan, edge (failing: leg edge)"

    code, out, _ = await invoke(
        namespace(topology.started - 30, window=10, events=topology.probe_url)
    )
    assert code == 4
    assert out.rstrip().splitlines()[-1] == f"verdict: {NO_DATA_SENTENCE}"


async def test_events_source_names_a_slow_leg_degraded_not_a_fault(topology: Topology) -> None:
    probe = topology.probe
    # The default warm-up is five answered heartbeats: then slowness can be judged.
    await eventually(
        lambda: (probe.metric("t3probe_rtt_seconds_count", leg="edge") or 0) >= 6,
        within=5 * TIME_UNIT,
    )
    after = len(probe.events)
    # Late, but well below the watchdog: the leg stays up.
    topology.edge.echo_delay = 0.15 * TIME_UNIT
    slow = await probe.wait_for("edge", "degraded", after=after)
    # Asked a moment later, as a person would: /events' times are rounded to the ms.
    await asyncio.sleep(0.3 * TIME_UNIT)
    code, doc = await invoke_json(namespace(slow.at + 0.1, window=2.0, events=topology.probe_url))
    assert code == 5, doc
    assert (doc["outcome"], doc["verdict"]) == ("degraded", "degraded")
    # The core leg crosses "core" fast: only the edge leg's own segments are slow.
    assert doc["suspects"] == ["wan", "edge"]
    assert doc["incident"]["legs"] == [{"leg": "edge", "status": "degraded", "reasons": []}]
    assert doc["incident"]["start"]["unix"] == pytest.approx(slow.at, abs=0.002)
    code, out, _ = await invoke(namespace(slow.at + 0.1, window=2.0, events=topology.probe_url))
    assert "verdict: degraded (slow, not down) — slow segments wan, edge" in out, out
    assert "infra fault" not in out
    assert not [event for event in probe.events if event.kind == "down"]


async def test_events_source_through_the_sync_entry_point(topology: Topology) -> None:
    fault = await inject_edge_fault(topology)
    args = namespace(fault + 0.1, window=1.0, events=topology.probe_url)
    # run_attribute owns its event loop; the probe keeps serving on this one meanwhile.
    assert await asyncio.to_thread(run_attribute, args) == 3


async def test_unreachable_probe_is_a_source_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = await invoke(namespace("-1m", events=url))
    assert code == 1
    assert f"cannot reach the probe at {url}/verdict" in err


def test_command_line_relative_time_and_unreachable_probe() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    result = subprocess.run(
        [sys.executable, "-m", "t3probe", "attribute", "--at=-1m", "--events", url, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["outcome"] == "error"
    assert "cannot reach the probe" in result.stderr


async def test_a_peer_that_is_not_a_probe_is_a_source_error() -> None:
    peer = await Peer().start()
    try:
        code, doc = await invoke_json(namespace("-1m", events=f"http://127.0.0.1:{peer.port}"))
    finally:
        await peer.stop()
    assert code == 1 and doc["outcome"] == "error"
    assert "answered HTTP 404" in doc["error"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"at": "yesterday-ish"}, "cannot parse TIME 'yesterday-ish'"),
        ({"at": "25:00"}, "not a valid time of day"),
        ({"tz": "Mars/Olympus"}, "--tz 'Mars/Olympus' is not a time zone"),
        ({"window": 0.0}, "--window must be more than 0"),
        ({"events": "ftp://127.0.0.1/events"}, "must be http:// or https://"),
        ({"events": "http://127.0.0.1:99999"}, "is malformed"),
    ],
)
async def test_bad_input_exits_2_before_asking_anything(
    options: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"at": "-1m", "events": "http://127.0.0.1:1"}
    values.update(options)
    code, out, err = await invoke(namespace(**values))
    assert code == 2 and out == ""
    assert message in err, err


async def test_events_source_gets_every_event_sharing_a_millisecond(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")], event_buffer_size=5000
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        log = probe.probe.recorder.events
        burst = time.time()  # more drops in one millisecond than a page holds
        for index in range(1500):
            log.append(LegEvent("burst", "down", None, burst, detail=f"#{index}"))
        for index in range(10):
            log.append(LegEvent("later", "down", None, burst + 1 + index))
        window = Window(at=burst, start=burst - 5, end=burst + 20, requested_end=burst + 20)
        found = await from_events(f"http://127.0.0.1:{probe.probe.port}", window, time.time())
    legs = {evidence.name: evidence for evidence in found.legs}
    assert len({drop.detail for drop in legs["burst"].drops}) == 1500
    assert len(legs["later"].drops) == 10
