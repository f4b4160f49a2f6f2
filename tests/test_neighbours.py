"""Legs sharing a segment act on each other's news at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from t3probe.events import LegEvent
from t3probe.neighbours import Neighbours, Wait

SEGMENTS = {"cloudflare": ("wan", "traefik"), "internal": ("traefik",), "t3serve": ("t3serve",)}


async def test_a_leg_coming_up_redials_the_down_legs_sharing_a_segment() -> None:
    neighbours = Neighbours(SEGMENTS, time.monotonic)
    cloudflare = asyncio.create_task(neighbours.wait("cloudflare", Wait.REDIAL, 30))
    t3serve = asyncio.create_task(neighbours.wait("t3serve", Wait.REDIAL, 0.2))
    await asyncio.sleep(0)
    neighbours.on_event(LegEvent("internal", "up", None, 0.0))
    async with asyncio.timeout(1):
        assert await cloudflare is True  # woken at once, not after 30 s
    assert await t3serve is False  # shares nothing: it slept its full time


async def test_a_drop_rechecks_up_legs_sharing_a_segment_and_not_redials() -> None:
    neighbours = Neighbours(SEGMENTS, time.monotonic)
    recheck = asyncio.create_task(neighbours.wait("internal", Wait.RECHECK, 30))
    redial = asyncio.create_task(neighbours.wait("cloudflare", Wait.REDIAL, 0.2))
    await asyncio.sleep(0)
    neighbours.on_event(LegEvent("cloudflare", "down", None, 0.0))
    async with asyncio.timeout(1):
        assert await recheck is True
    assert await redial is False  # a drop is no reason to re-dial


async def test_a_leg_is_not_woken_by_its_own_news_and_waits_leave_no_registrations() -> None:
    neighbours = Neighbours(SEGMENTS, time.monotonic)
    alone = asyncio.create_task(neighbours.wait("internal", Wait.REDIAL, 0.1))
    await asyncio.sleep(0)
    neighbours.on_event(LegEvent("internal", "up", None, 0.0))
    assert await alone is False
    neighbours.wake("internal", Wait.REDIAL)  # nobody waiting: nothing to do, no error


async def test_a_recovery_announced_while_a_leg_was_failing_is_not_missed() -> None:
    neighbours = Neighbours(SEGMENTS, time.monotonic)
    attempt_started = time.monotonic()
    neighbours.on_event(LegEvent("internal", "up", None, 0.0))  # nobody waiting yet
    async with asyncio.timeout(1):
        assert await neighbours.wait("cloudflare", Wait.REDIAL, 30, since=attempt_started)
    # Its own recovery is no news to a leg; older news neither.
    neighbours.on_event(LegEvent("cloudflare", "up", None, 0.0))
    later = time.monotonic()
    assert not await neighbours.wait("cloudflare", Wait.REDIAL, 0.05, since=later)


async def test_waits_ended_by_timer_news_or_cancellation_leave_nothing_behind() -> None:
    # Every heartbeat of every leg waits here: a registration or a timer left behind per
    # wait would grow without bound.
    neighbours = Neighbours(SEGMENTS, time.monotonic)
    for _ in range(50):
        assert await neighbours.wait("internal", Wait.RECHECK, 0) is False
        assert await neighbours.wait("internal", Wait.RECHECK, -1) is False
        woken = asyncio.create_task(neighbours.wait("internal", Wait.RECHECK, 30))
        cancelled = asyncio.create_task(neighbours.wait("t3serve", Wait.REDIAL, 30, connection=1))
        await asyncio.sleep(0)
        neighbours.on_event(LegEvent("cloudflare", "down", None, 0.0))
        cancelled.cancel()
        async with asyncio.timeout(1):
            assert await woken is True
            with pytest.raises(asyncio.CancelledError):
                await cancelled
    assert neighbours._wake == {}
    assert neighbours._waiting == {kind: {} for kind in Wait}
    # No timer of theirs is left to fire 30 s on (each would keep its future alive).
    loop = asyncio.get_running_loop()
    scheduled = getattr(loop, "_scheduled", None)  # asyncio's own loop: tests run on it
    assert scheduled is not None
    pending = [h for h in scheduled if not h.cancelled()]
    assert all("_settle" not in repr(h) for h in pending), pending
