"""The probe's own HTTP surface under load: bounded answers, shared renders."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp

from t3probe.events import LegEvent
from t3probe.server import EVENTS_PAGE_MAX, SharedRender
from tests.support.harness import free_port, leg, probe_config, running_probe


async def test_concurrent_scrapes_share_one_render() -> None:
    renders = 0
    lock = threading.Lock()

    def render() -> bytes:
        nonlocal renders
        with lock:
            renders += 1
        time.sleep(0.2)
        return b"exposition"

    shared = SharedRender(render)
    bodies = await asyncio.gather(*(shared() for _ in range(50)))
    assert bodies == [b"exposition"] * 50
    assert renders == 1
    assert await shared() == b"exposition" and renders == 2  # a later scrape renders anew


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
