"""The lab's stand-in for the user's backend process ("t3 serve") and its faults.

``GET /api/auth/session`` answers 200 JSON, as the real process does for a signed-out
client; ``GET /healthz`` answers 200. Faults (one at a time) model the ways the process
itself fails while its host and network stay fine:

* ``stall()`` — every request, ``/healthz`` included, hangs until the stall ends, then
  all are answered: what a swap-thrashed or CPU-starved event loop looks like from
  outside (the kernel still accepts connections). It is simulated by parking handlers
  on an event, so the lab's own loop keeps running;
* ``trickle(bytes_per_second)`` — 200 with a body that never ends while the fault lasts,
  sent at that rate (a process too starved to finish a response);
* ``status(code)`` — the session endpoint answers ``code`` (e.g. 503 while restarting);
* ``huge_body(size_bytes)`` — a valid but huge JSON body, streamed from a fixed buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["BACKEND_FAULTS", "BackendFault", "BackendServer", "make_backend_app", "serve_backend"]

SESSION_PATH = "/api/auth/session"
HEALTHZ_PATH = "/healthz"


class BackendFault(enum.StrEnum):
    """How the stand-in backend misbehaves (names of the lab's API)."""

    STALL = "stall"
    SLOW = "slow"
    TRICKLE = "trickle"
    STATUS = "status"
    HUGE_BODY = "huge_body"


BACKEND_FAULTS = frozenset(fault.value for fault in BackendFault)
SESSION_BODY = json.dumps({"authenticated": False, "session": None}).encode()
DEFAULT_HUGE_BODY_BYTES = 32 * 1024 * 1024
MAX_HUGE_BODY_BYTES = 1024 * 1024 * 1024
TRICKLE_TICK_SECONDS = 0.1
MAX_SLOW_MS = 60_000
_FILL = b" " * (64 * 1024)  # JSON allows leading whitespace: padding keeps bodies valid


def _number(name: str, raw: object, low: float, high: float) -> float:
    # Strings are accepted because a control endpoint hands over query parameters.
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{name} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low:g}..{high:g}, got {value:g}")
    return value


@dataclass(frozen=True)
class Fault:
    name: BackendFault
    params: Mapping[str, float | str] = field(default_factory=dict)


_PARAMETERS: dict[BackendFault, set[str]] = {
    BackendFault.STALL: set(),
    BackendFault.SLOW: {"ms"},
    BackendFault.TRICKLE: {"bytes_per_second"},
    BackendFault.STATUS: {"code"},
    BackendFault.HUGE_BODY: {"size_bytes"},
}


def _validate(raw_name: str, params: Mapping[str, object]) -> Fault:
    # A name comes from scripts and from the lab's HTTP API: checked once, here.
    if raw_name not in BACKEND_FAULTS:
        known = ", ".join(sorted(BACKEND_FAULTS))
        raise ValueError(f"unknown fault {raw_name!r}; known: {known}")
    name = BackendFault(raw_name)
    allowed = _PARAMETERS[name]
    required = allowed - {"size_bytes"}
    if not required <= set(params) <= allowed:
        wanted = ", ".join(sorted(allowed)) or "no parameters"
        raise ValueError(f"fault {name.value!r} takes {wanted}, got {sorted(params)}")
    if name is BackendFault.SLOW:
        return Fault(name, {"ms": _number("ms", params["ms"], 1, MAX_SLOW_MS)})
    if name is BackendFault.TRICKLE:
        rate = _number("bytes_per_second", params["bytes_per_second"], 1, 10_000_000)
        return Fault(name, {"bytes_per_second": rate})
    if name is BackendFault.STATUS:
        code = _number("code", params["code"], 200, 599)
        if code != int(code):
            raise ValueError(f"code must be an integer, got {code:g}")
        return Fault(name, {"code": int(code)})
    if name is BackendFault.HUGE_BODY:
        size = _number(
            "size_bytes", params.get("size_bytes", DEFAULT_HUGE_BODY_BYTES), 1, MAX_HUGE_BODY_BYTES
        )
        return Fault(name, {"size_bytes": int(size)})
    return Fault(name)


class _BackendState:
    def __init__(self) -> None:
        self.fault: Fault | None = None
        self.thawed = asyncio.Event()  # cleared while stalled
        self.thawed.set()
        self.requests = 0


_STATE_KEY = web.AppKey("t3probe_backend_state", _BackendState)


async def _healthz(request: web.Request) -> web.Response:
    await request.app[_STATE_KEY].thawed.wait()
    return web.Response(text="ok")


async def _session(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE_KEY]
    state.requests += 1
    await state.thawed.wait()
    fault = state.fault
    if fault is not None and fault.name is BackendFault.SLOW:
        # Slow but alive: a host under memory pressure answers, late.
        await asyncio.sleep(float(fault.params["ms"]) / 1000)
        return web.Response(body=SESSION_BODY, content_type="application/json")
    if fault is None or fault.name is BackendFault.STALL:
        return web.Response(body=SESSION_BODY, content_type="application/json")
    if fault.name is BackendFault.STATUS:
        code = int(fault.params["code"])
        if code in (204, 304):  # HTTP forbids a body on these
            return web.Response(status=code)
        body = json.dumps({"error": f"lab fault: status {code}"}).encode()
        return web.Response(status=code, body=body, content_type="application/json")
    if fault.name is BackendFault.TRICKLE:
        return await _trickle(request, state, fault)
    return await _huge_body(request, int(fault.params["size_bytes"]))


async def _trickle(request: web.Request, state: _BackendState, fault: Fault) -> web.StreamResponse:
    rate = float(fault.params["bytes_per_second"])
    # Ticks of 100 ms, or one byte per tick below 10 B/s, so the rate holds at any scale.
    tick = max(TRICKLE_TICK_SECONDS, 1.0 / rate)
    chunk = _FILL[: max(1, min(len(_FILL), round(rate * tick)))]
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        while state.fault is fault:
            await response.write(chunk)  # awaits the drain: a client that stops reading
            await asyncio.sleep(tick)  # pauses us instead of growing a buffer
        await response.write(SESSION_BODY)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up, which is what a trickle is for
    return response


async def _huge_body(request: web.Request, size: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = max(size, len(SESSION_BODY))
    await response.prepare(request)
    try:
        remaining = response.content_length - len(SESSION_BODY)
        while remaining > 0:
            piece = _FILL[:remaining]
            await response.write(piece)
            remaining -= len(piece)
        await response.write(SESSION_BODY)
        await response.write_eof()
    except ConnectionError:
        pass  # a bounded reader hung up, as it should
    return response


def make_backend_app() -> web.Application:
    app = web.Application()
    app[_STATE_KEY] = _BackendState()
    app.router.add_get(SESSION_PATH, _session)
    app.router.add_get(HEALTHZ_PATH, _healthz)
    return app


class BackendServer:
    """A running lab backend and its faults."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite) -> None:
        self._runner = runner
        self._site = site
        self._state = runner.app[_STATE_KEY]
        self._stopped = False

    @property
    def port(self) -> int:
        return self._site.port

    @property
    def request_count(self) -> int:
        """Session requests received, stalled ones included."""
        return self._state.requests

    @property
    def fault(self) -> Fault | None:
        return self._state.fault

    def set_fault(self, name: str, **params: object) -> None:
        """Replace the active fault (if any); ValueError if unknown or invalid."""
        fault = _validate(name, params)
        self.clear_fault()
        self._state.fault = fault
        if fault.name is BackendFault.STALL:
            self._state.thawed.clear()

    def clear_fault(self) -> None:
        """End the active fault: stalled requests are answered, trickles finish."""
        self._state.fault = None
        self._state.thawed.set()

    @contextlib.contextmanager
    def stall(self) -> Iterator[None]:
        with self._scoped(BackendFault.STALL):
            yield

    @contextlib.contextmanager
    def slow(self, ms: float) -> Iterator[None]:
        with self._scoped(BackendFault.SLOW, ms=ms):
            yield

    @contextlib.contextmanager
    def trickle(self, bytes_per_second: float) -> Iterator[None]:
        with self._scoped(BackendFault.TRICKLE, bytes_per_second=bytes_per_second):
            yield

    @contextlib.contextmanager
    def status(self, code: int) -> Iterator[None]:
        with self._scoped(BackendFault.STATUS, code=code):
            yield

    @contextlib.contextmanager
    def huge_body(self, size_bytes: int = DEFAULT_HUGE_BODY_BYTES) -> Iterator[None]:
        with self._scoped(BackendFault.HUGE_BODY, size_bytes=size_bytes):
            yield

    @contextlib.contextmanager
    def _scoped(self, name: BackendFault, **params: object) -> Iterator[None]:
        active = self._state.fault
        if active is not None:
            # Scripts stack faults by mistake; silently replacing one would hide it.
            raise RuntimeError(f"backend: fault {active.name.value!r} is already active")
        self.set_fault(name, **params)
        fault = self._state.fault
        try:
            yield
        finally:
            if self._state.fault is fault:
                self.clear_fault()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.clear_fault()  # releases stalled handlers and ends trickles
        await self._runner.cleanup()


async def serve_backend(
    host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> BackendServer:
    """Start the backend on ``host:port`` (0 picks a port); bind errors propagate."""
    # A short shutdown: open trickles end within one tick once the fault is cleared.
    runner = web.AppRunner(make_backend_app(), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return BackendServer(runner, site)
