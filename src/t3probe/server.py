"""The probe's HTTP surface: metrics, health, readiness, events and the verdict."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from t3probe import exposition
from t3probe.recorder import Recorder
from t3probe.reload import ReloadResult

LIVENESS_TOLERANCE_SECONDS = 5.0
# Scrapes this close together get the same exposition: far below any scrape interval.
RENDER_MAX_AGE_SECONDS = 1.0
# One /events answer carries at most this many events; older ones are paged with since=.
EVENTS_PAGE_MAX = 1000
# What a browser pointed at the probe's port sees first: where everything is.
INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>t3probe</title></head><body>
<h1>t3probe</h1>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: liveness (the probe's own event loop)</li>
<li><a href="/readyz">/readyz</a>: readiness (the probe has started its legs)</li>
<li><a href="/events">/events</a>: recent leg events as JSON (?since=, ?limit=)</li>
<li><a href="/verdict">/verdict</a>: each leg's state and the segment at fault, as JSON</li>
<li>POST /-/reload: re-read the config file and environment (like SIGHUP)</li>
</ul>
</body></html>
"""


class SharedRender:
    """One exposition render at a time, shared by every scraper that asks meanwhile, and
    reused by those that ask within ``max_age`` seconds of it.

    Fifty concurrent scrapers (or an HA pair of Prometheus servers scraping together)
    would otherwise render fifty times, each costing the probe's loop the same work.
    """

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        max_age: float = RENDER_MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._max_age = max_age
        self._monotonic = monotonic
        self._inflight: asyncio.Future[bytes] | None = None
        self._last: tuple[float, bytes] | None = None

    async def __call__(self) -> bytes:
        if self._last is not None and self._monotonic() - self._last[0] < self._max_age:
            return self._last[1]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._render())
            self._inflight.add_done_callback(self._finished)
        return await asyncio.shield(self._inflight)

    def _finished(self, future: asyncio.Future[bytes]) -> None:
        self._inflight = None
        if future.cancelled():
            return
        if future.exception() is None:  # retrieved: a failed render reaches its awaiters
            self._last = (self._monotonic(), future.result())


def make_app(
    recorder: Recorder,
    registry_exposition: Callable[[], Awaitable[bytes]],
    loop_alive: Callable[[], bool],
    ready: Callable[[], bool],
    reload: Callable[[], Awaitable[ReloadResult]] | None = None,
) -> web.Application:
    shared_render = SharedRender(registry_exposition)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX_HTML, content_type="text/html")

    async def metrics(request: web.Request) -> web.Response:
        # Rendering thousands of series takes a while: it runs in slices, and is shared.
        body = await shared_render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        # Liveness is about the probe's own loop only: legs being down is the probe
        # doing its job, and restarting it for that would blind the operator.
        if loop_alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="event loop lagging\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def events(request: web.Request) -> web.Response:
        since_text = request.query.get("since")
        since: float | None = None
        if since_text is not None:
            try:
                since = float(since_text)
            except ValueError:
                return web.json_response(
                    {"error": f"since={since_text!r} is not a unix timestamp"}, status=400
                )
        limit_text = request.query.get("limit", str(EVENTS_PAGE_MAX))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= EVENTS_PAGE_MAX:
            return web.json_response(
                {"error": f"limit={limit_text!r} must be a whole number 1..{EVENTS_PAGE_MAX}"},
                status=400,
            )
        selected = recorder.events.since(since)
        limit = int(limit_text)
        if since is None:
            # "What happened lately": the newest page.
            page, more = selected[-limit:], False
        else:
            # Paging forward: the oldest after since=, then since= the last "at" given.
            page, more = selected[:limit], len(selected) > limit
        payload = {"events": [e.to_json() for e in page], "more": more}
        body = await asyncio.get_running_loop().run_in_executor(None, json.dumps, payload)
        return web.Response(body=body.encode(), content_type="application/json")

    async def verdict(request: web.Request) -> web.Response:
        return web.json_response(recorder.verdict_json())

    async def reload_config(request: web.Request) -> web.Response:
        # Like blackbox_exporter's: it only re-reads the probe's own file, so it needs
        # no secret; a rejected config answers 500 with the reason, as Prometheus does.
        if reload is None:
            return web.Response(status=404, text="reload is not available\n")
        result = await reload()
        return web.Response(status=200 if result.ok else 500, text=result.message + "\n")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/", index)
    app.router.add_post("/-/reload", reload_config)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/events", events)
    app.router.add_get("/verdict", verdict)
    return app


def exposition_of(registry: Collector) -> Callable[[], Awaitable[bytes]]:
    async def render() -> bytes:
        return await exposition.render(registry)

    return render
