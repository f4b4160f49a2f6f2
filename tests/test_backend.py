"""The lab backend ("t3 serve" stand-in) and its faults, seen by a real HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from t3probe.lab.backend import SESSION_PATH, BackendFault, BackendServer, serve_backend

HOST = "127.0.0.1"


def url(server: BackendServer, path: str = "/api/auth/session") -> str:
    return f"http://{HOST}:{server.port}{path}"


async def get_status(session: aiohttp.ClientSession, target: str, within: float) -> int:
    async with session.get(target, timeout=aiohttp.ClientTimeout(total=within)) as resp:
        await resp.read()
        return resp.status


async def read_for(resp: aiohttp.ClientResponse, seconds: float) -> int:
    """Bytes of the body received within ``seconds``; the body must not end sooner."""
    received = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while chunk := await resp.content.readany():
                received += len(chunk)
            raise AssertionError("the body ended")
    return received


async def test_session_answers_json(backend: BackendServer, session: aiohttp.ClientSession) -> None:
    async with session.get(url(backend)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"authenticated": False, "session": None}
    assert await get_status(session, url(backend, "/healthz"), 2) == 200
    assert backend.request_count == 1


async def test_stall_hangs_everything_then_answers_pending_requests(
    backend: BackendServer, session: aiohttp.ClientSession, time_unit: float
) -> None:
    short = 0.2 * time_unit
    with backend.stall():
        with pytest.raises(TimeoutError):
            await get_status(session, url(backend), short)
        with pytest.raises(TimeoutError):
            await get_status(session, url(backend, "/healthz"), short)
        pending = asyncio.create_task(get_status(session, url(backend), 5))
        await asyncio.sleep(short)
        assert not pending.done()
    assert await asyncio.wait_for(pending, 2) == 200
    assert await get_status(session, url(backend), 2) == 200


async def test_status_fault(backend: BackendServer, session: aiohttp.ClientSession) -> None:
    with backend.status(503):
        assert await get_status(session, url(backend), 2) == 503
        assert await get_status(session, url(backend, "/healthz"), 2) == 200
    assert await get_status(session, url(backend), 2) == 200


async def test_trickle_is_slow_bounded_and_ends_as_valid_json(
    backend: BackendServer, session: aiohttp.ClientSession, time_unit: float
) -> None:
    loop = asyncio.get_running_loop()
    with backend.trickle(100):
        async with session.get(url(backend)) as resp:
            assert resp.status == 200
            started = loop.time()
            received = await read_for(resp, 0.5 * time_unit)
            elapsed = loop.time() - started
            assert 0 < received <= 100 * elapsed + 20
            assert not resp.content.at_eof()
    # Once the fault ends, a new trickle-free request is answered normally.
    async with session.get(url(backend)) as resp:
        assert await resp.json() == {"authenticated": False, "session": None}


async def test_trickle_body_completes_when_fault_ends(
    backend: BackendServer, session: aiohttp.ClientSession, time_unit: float
) -> None:
    with backend.trickle(1000):
        resp = await session.get(url(backend))
        await asyncio.sleep(0.15 * time_unit)
    async with resp:
        body = await asyncio.wait_for(resp.json(content_type=None), 2)
    assert body == {"authenticated": False, "session": None}


async def test_huge_body_is_valid_json_of_the_requested_size(
    backend: BackendServer, session: aiohttp.ClientSession
) -> None:
    with backend.huge_body(size_bytes=3 * 1024 * 1024):
        async with session.get(url(backend)) as resp:
            assert resp.content_length == 3 * 1024 * 1024
            assert await resp.json() == {"authenticated": False, "session": None}
        # A bounded reader may hang up early without harming the server.
        async with session.get(url(backend)) as resp:
            assert len(await resp.content.read(1024)) <= 1024
    assert await get_status(session, url(backend), 2) == 200


async def test_manual_control_and_validation(backend: BackendServer) -> None:
    backend.set_fault("status", code="502")
    assert backend.fault is not None
    assert dict(backend.fault.params) == {"code": 502}
    backend.set_fault("stall")  # replaces
    assert backend.fault.name == "stall"
    backend.clear_fault()
    assert backend.fault is None
    for name, params, message in [
        ("explode", {}, "unknown fault"),
        ("status", {"code": 99}, "within"),
        ("status", {"code": 500.5}, "integer"),
        ("trickle", {}, "takes bytes_per_second"),
        ("trickle", {"bytes_per_second": "slow"}, "number"),
        ("stall", {"for": 3}, "no parameters"),
    ]:
        with pytest.raises(ValueError, match=message):
            backend.set_fault(name, **params)
    with backend.stall(), pytest.raises(RuntimeError, match="already active"), backend.status(500):
        pass
    assert backend.fault is None


async def test_stop_releases_stalled_requests(session: aiohttp.ClientSession) -> None:
    backend = await serve_backend(HOST, 0)
    try:
        backend.set_fault("stall")
        pending = asyncio.create_task(get_status(session, url(backend), 5))
        await asyncio.sleep(0.05)
    finally:
        await asyncio.wait_for(backend.stop(), 3)
    assert await asyncio.wait_for(pending, 2) == 200


async def test_every_backend_fault_is_held_as_its_enum_member(backend: BackendServer) -> None:
    params: dict[BackendFault, dict[str, object]] = {
        BackendFault.TRICKLE: {"bytes_per_second": 10},
        BackendFault.STATUS: {"code": 503},
        BackendFault.SLOW: {"ms": 500},
    }
    for fault in BackendFault:
        backend.set_fault(fault.value, **params.get(fault, {}))
        assert backend.fault is not None and backend.fault.name is fault
    backend.clear_fault()
    # An error names the fault as the API spells it, not as a Python enum.
    already = pytest.raises(RuntimeError, match="fault 'stall' is already")
    with backend.stall(), already, backend.status(500):
        pass


async def test_a_slow_backend_answers_late_but_answers(backend: BackendServer) -> None:
    async with aiohttp.ClientSession() as session:
        with backend.slow(300):
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{backend.port}{SESSION_PATH}") as response:
                assert response.status == 200
                assert (await response.json())["authenticated"] is False
            assert time.perf_counter() - started >= 0.3
    with pytest.raises(ValueError, match=r"ms must be within 1\.\.60000"):
        backend.set_fault("slow", ms=0)
