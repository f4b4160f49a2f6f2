"""The probe's own HTTP surface under load: bounded answers, shared renders."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from t3probe.clock import SystemClock
from t3probe.events import EventLog, LegEvent
from t3probe.metrics import ProbeMetrics
from t3probe.recorder import Recorder
from t3probe.server import EVENTS_PAGE_MAX, ScrapeGate, SharedRender, make_app
from tests.support.harness import (
    Peer,
    eventually,
    free_port,
    leg,
    probe_config,
    running_probe,
    serve_app,
)


async def test_concurrent_scrapes_share_one_render() -> None:
    renders = 0

    async def render() -> bytes:
        nonlocal renders
        renders += 1
        await asyncio.sleep(0.2)
        return b"exposition %d" % renders

    now = 100.0
    shared = SharedRender(render, max_age=1.0, clock=lambda: now)
    bodies = await asyncio.gather(*(shared() for _ in range(50)))
    assert bodies == [b"exposition 1"] * 50
    assert renders == 1
    now += 0.5  # a scrape right after reuses the render
    assert await shared() == b"exposition 1" and renders == 1
    now += 0.6  # a later scrape renders anew
    assert await shared() == b"exposition 2" and renders == 2


async def test_events_come_in_bounded_pages_that_a_client_can_follow(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")], event_buffer_size=5000
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")  # the leg stays up: these are the only events
        log = probe.probe.recorder.events
        start = time.time()  # the probe stamps events as they happen: times only grow
        for index in range(2500):
            log.append(LegEvent("ws", "down", None, start + index * 0.01, detail="paged"))
        base = f"http://127.0.0.1:{probe.probe.port}/events"
        async with aiohttp.ClientSession() as client:
            async with client.get(base) as response:
                newest = await response.json()
            seen: list[float] = []
            ours = 0
            since = "0"
            for _ in range(10):
                async with client.get(base, params={"since": since}) as response:
                    page = await response.json()
                assert len(page["events"]) <= EVENTS_PAGE_MAX
                seen += [event["at"] for event in page["events"]]
                ours += sum(event["detail"] == "paged" for event in page["events"])
                if not page["more"]:
                    break
                since = str(page["events"][-1]["at"])
            async with client.get(base, params={"limit": "0"}) as response:
                refused = response.status
    assert len(newest["events"]) == EVENTS_PAGE_MAX
    assert newest["events"][-1]["at"] == max(seen)  # without since=: the newest page
    assert ours == 2500
    assert seen == sorted(seen)
    assert refused == 400


async def test_the_root_is_an_index_of_the_endpoints() -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")])
    async with running_probe(config) as probe:
        base = f"http://127.0.0.1:{probe.probe.port}"
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/") as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                index = await response.text()
            for path in ("/metrics", "/healthz", "/readyz", "/events", "/verdict"):
                assert f'href="{path}"' in index
                async with client.get(f"{base}{path}") as response:
                    assert response.status in (200, 503), path  # each link leads somewhere
            assert "POST /-/reload" in index


async def _same_millisecond_probe_events(
    client: aiohttp.ClientSession, base: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    """Every event the probe serves, following its cursor from ``params``."""
    collected: list[dict[str, Any]] = []
    for _ in range(10):
        async with client.get(base, params=params) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        collected += page["events"]
        if not page["more"]:
            return collected
        params = {"after_id": str(page["events"][-1]["id"])}
    raise AssertionError("the cursor never reached the end")


async def test_events_sharing_a_millisecond_are_all_paged(peer: Peer) -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")], event_buffer_size=5000
    )
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        log = probe.probe.recorder.events
        burst = time.time()  # a thousand legs dropping in the same millisecond
        for index in range(1500):
            log.append(LegEvent(f"leg{index}", "down", None, burst, detail="burst"))
        for index in range(10):
            log.append(LegEvent("ws", "down", None, burst + 1 + index, detail="later"))
        base = f"http://127.0.0.1:{probe.probe.port}/events"
        async with aiohttp.ClientSession() as client:
            paged = await _same_millisecond_probe_events(client, base, {"after_id": "0"})
            # since= keeps its documented meaning: strictly after that (rounded) time.
            async with client.get(base, params={"since": str(round(burst, 3))}) as response:
                later = (await response.json())["events"]
            async with client.get(base, params={"after_id": "-1"}) as response:
                refused = response.status
            async with client.get(base, params={"since": "0", "after_id": "0"}) as response:
                both = response.status
    ours = [event for event in paged if event["detail"] in ("burst", "later")]
    assert len(ours) == 1510 and len(paged) == 1511  # and the leg's own "up"
    assert len({event["leg"] for event in ours if event["detail"] == "burst"}) == 1500
    ids = [event["id"] for event in paged]
    assert ids == sorted(set(ids))
    assert [event["detail"] for event in later] == ["later"] * 10
    assert refused == 400 and both == 400


def test_event_ids_survive_a_resize_and_the_ring_wrapping() -> None:
    log = EventLog(3)
    for index in range(5):
        log.append(LegEvent("a", "down", None, 100.0 + index))
    assert [event.id for event in log.since()] == [3, 4, 5]
    assert [event.id for event in log.after(3, limit=10)[0]] == [4, 5]
    # A cursor older than the buffer gets what is left, with nothing skipped silently.
    assert [event.id for event in log.after(0, limit=2)[0]] == [3, 4]
    assert log.after(0, limit=2)[1] is True
    log.resize(4)
    log.append(LegEvent("a", "up", None, 200.0))
    assert [event.id for event in log.since()] == [3, 4, 5, 6]
    log.resize(2)
    assert [event.id for event in log.since()] == [5, 6]
    assert [event.at for event in log.since(100.0 + 4)] == [200.0]
    assert log.after(6, limit=10) == ([], False)
    # Each page is joined from the events' recorded JSON, which must follow them.
    log.resize(5)
    log.append(LegEvent("b", "down", None, 300.0, detail="after the resizes"))
    page, more = log.after(0, limit=10)
    body = json.loads(log.page_body(page, more))
    assert [event["id"] for event in body["events"]] == [5, 6, 7]
    assert body["events"] == [event.to_json() for event in page]
    assert body["more"] is False


def _one_leg_recorder() -> Recorder:
    config = probe_config([leg("ws", "ws://127.0.0.1:1/probe/ws")])
    return Recorder(config, ProbeMetrics(CollectorRegistry(), config), SystemClock(), print)


async def test_concurrent_scrapes_beyond_the_bound_are_refused_at_once() -> None:
    recorder = _one_leg_recorder()
    release = asyncio.Event()

    async def slow_render() -> bytes:
        await release.wait()  # every admitted scrape waits on this one render
        return b"exposition\n"

    gate = ScrapeGate(2)
    app = make_app(recorder, slow_render, lambda: True, lambda: True, scrape_gate=gate)
    runner, port = await serve_app(app)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as client:

            async def scrape() -> tuple[int, str | None, str]:
                async with client.get(url) as response:
                    return (
                        response.status,
                        response.headers.get("Retry-After"),
                        await response.text(),
                    )

            admitted = [asyncio.create_task(scrape()) for _ in range(2)]
            await eventually(lambda: gate.active == 2, within=5.0)
            status, retry_after, _ = await scrape()  # the third, while two are in flight
            release.set()
            answers = await asyncio.gather(*admitted)
            again = await scrape()  # the slots are free again
    finally:
        release.set()
        await runner.cleanup()
    assert status == 503 and retry_after is not None and int(retry_after) >= 1
    assert answers == [(200, None, "exposition\n")] * 2
    assert again == (200, None, "exposition\n")
    assert gate.active == 0


async def test_event_readers_beyond_the_bound_are_refused_at_once() -> None:
    recorder = _one_leg_recorder()

    async def render() -> bytes:
        return b""

    readers = ScrapeGate(1)
    app = make_app(recorder, render, lambda: True, lambda: True, events_gate=readers)
    runner, port = await serve_app(app)
    url = f"http://127.0.0.1:{port}/events"
    try:
        async with aiohttp.ClientSession() as client:
            assert readers.try_enter()  # a reader still being sent its page
            async with client.get(url) as response:
                refused = (response.status, response.headers.get("Retry-After"))
            readers.leave()
            async with client.get(url) as response:
                served = (response.status, await response.json())
            async with client.get(f"{url}?limit=0") as response:
                bad = response.status
    finally:
        await runner.cleanup()
    assert refused[0] == 503 and refused[1] is not None and int(refused[1]) >= 1
    assert served == (200, {"events": [], "more": False})
    assert bad == 400
    assert readers.active == 0  # every slot given back, the refused and the bad included
