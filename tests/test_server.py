"""The probe's own HTTP surface under load: bounded answers, shared renders."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from t3probe.events import LegEvent
from t3probe.server import EVENTS_PAGE_MAX, SharedRender
from tests.support.harness import free_port, leg, probe_config, running_probe


async def test_concurrent_scrapes_share_one_render() -> None:
    renders = 0
    now = 0.0

    async def render() -> bytes:
        nonlocal renders
        renders += 1
        await asyncio.sleep(0.2)
        return b"exposition %d" % renders

    shared = SharedRender(render, max_age=1.0, monotonic=lambda: now)
    bodies = await asyncio.gather(*(shared() for _ in range(50)))
    assert bodies == [b"exposition 1"] * 50
    assert renders == 1
    now += 0.5  # a scrape right after reuses the render
    assert await shared() == b"exposition 1" and renders == 1
    now += 0.6  # a later scrape renders anew
    assert await shared() == b"exposition 2" and renders == 2


async def test_events_come_in_bounded_pages_that_a_client_can_follow() -> None:
    config = probe_config(
        [leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")], event_buffer_size=5000
    )
    async with running_probe(config) as probe:
        log = probe.probe.recorder.events
        start = time.time() - 3600
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
