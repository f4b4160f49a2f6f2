"""The probe's HTTP surface: metrics, health, readiness, events and the verdict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from t3probe import exposition
from t3probe.recorder import Recorder
from t3probe.reload import ReloadResult

LIVENESS_TOLERANCE_SECONDS = 5.0
# Scrapers answered at once (Prometheus HA pairs, a dashboard, a human): more are refused
# with 503 at once. Each answer carries the whole exposition (megabytes at hundreds of
# legs), and sending fifty of them at once is work enough to delay the legs' heartbeats
# into false drops (docs/benchmarks.md, "Hardening").
MAX_CONCURRENT_SCRAPES = 4
SCRAPE_RETRY_AFTER_SECONDS = 1
# How long one /metrics render serves scrapers: at most this stale, at most this often.
RENDER_MAX_AGE_SECONDS = 1.0
# One /events answer carries at most this many events; the rest are paged with after_id=.
EVENTS_PAGE_MAX = 1000
# Readers of /events answered at once (a page is up to a few hundred KB): a storm of them
# sending at once delayed heartbeats as a storm of scrapes did (docs/benchmarks.md, §6).
MAX_CONCURRENT_EVENT_READERS = 8
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
    reused for ``max_age`` seconds after it.

    Fifty concurrent scrapers would otherwise render fifty times in fifty threads, each
    holding the interpreter, and starve the probe's own loop into false drops; scrapers
    coming back at once would keep a thread rendering without pause. A body at most
    ``max_age`` old is as good to a scraper that polls every few seconds.
    """

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        max_age: float = RENDER_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._max_age = max_age
        self._clock = clock
        self._inflight: asyncio.Future[bytes] | None = None
        self._last: tuple[float, bytes] | None = None

    async def __call__(self) -> bytes:
        if self._last is not None and self._clock() - self._last[0] < self._max_age:
            return self._last[1]
        if self._inflight is None:
            started = self._clock()
            # Rendered on the loop in short slices (t3probe.exposition), never in a thread
            # that would hold the interpreter for the whole render.
            self._inflight = asyncio.ensure_future(self._render())
            self._inflight.add_done_callback(lambda done: self._finished(done, started))
        return await asyncio.shield(self._inflight)

    def _finished(self, future: asyncio.Future[bytes], started: float) -> None:
        self._inflight = None
        if future.cancelled():
            return
        if future.exception() is None:  # retrieved: a failed render is its awaiters' error
            self._last = (started, future.result())


class ScrapeGate:
    """Admits at most ``limit`` scrapes at a time; the rest are turned away at once.

    Refusing is cheaper than queueing: a queued scraper still holds a connection and
    its answer would be stale by the time it is sent, while a refused one retries.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self._limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def make_app(
    recorder: Recorder,
    registry_exposition: Callable[[], Awaitable[bytes]],
    loop_alive: Callable[[], bool],
    ready: Callable[[], bool],
    reload: Callable[[], Awaitable[ReloadResult]] | None = None,
    scrape_gate: ScrapeGate | None = None,
    events_gate: ScrapeGate | None = None,
) -> web.Application:
    shared_render = SharedRender(registry_exposition)
    gate = scrape_gate if scrape_gate is not None else ScrapeGate(MAX_CONCURRENT_SCRAPES)
    readers = events_gate if events_gate is not None else ScrapeGate(MAX_CONCURRENT_EVENT_READERS)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX_HTML, content_type="text/html")

    async def metrics(request: web.Request) -> web.StreamResponse:
        if not gate.try_enter():
            return _busy("too many concurrent scrapes; retry")
        try:
            # Rendering thousands of series takes a while: it runs in slices, and is shared.
            body = await shared_render()
            response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
            # Sent here, not after returning, so the slot is held until the body is out.
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            gate.leave()

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

    async def events(request: web.Request) -> web.StreamResponse:
        if not readers.try_enter():
            return _busy("too many concurrent /events readers; retry")
        try:
            response = _events_page(recorder, request.query)
            # Sent here, so the slot is held until the page is out.
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            readers.leave()

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


def _events_page(recorder: Recorder, query: Mapping[str, str]) -> web.Response:
    limit_text = query.get("limit", str(EVENTS_PAGE_MAX))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= EVENTS_PAGE_MAX:
        return _bad_request(f"limit={limit_text!r} must be a whole number 1..{EVENTS_PAGE_MAX}")
    limit = int(limit_text)
    if "since" in query and "after_id" in query:
        return _bad_request("give since= or after_id=, not both")
    log = recorder.events
    if "after_id" in query:
        # The cursor: ids are unique, so events sharing a millisecond are never lost.
        after_text = query["after_id"]
        if not after_text.isdigit() or len(after_text) > 18:
            return _bad_request(f"after_id={after_text!r} is not an event id (0 or more)")
        page, more = log.after(int(after_text), limit)
    elif "since" in query:
        try:
            since = float(query["since"])
        except ValueError:
            return _bad_request(f"since={query['since']!r} is not a unix timestamp")
        page, more = log.after_time(since, limit)
    else:
        # "What happened lately": the newest page.
        page, more = log.newest(limit), False
    # Joined from each event's JSON, made when it was recorded: no encoding here.
    return web.Response(body=log.page_body(page, more), content_type="application/json")


def _busy(message: str) -> web.Response:
    return web.Response(
        status=503, text=message + "\n", headers={"Retry-After": str(SCRAPE_RETRY_AFTER_SECONDS)}
    )


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def exposition_of(registry: Collector) -> Callable[[], Awaitable[bytes]]:
    async def render() -> bytes:
        return await exposition.render(registry)

    return render
