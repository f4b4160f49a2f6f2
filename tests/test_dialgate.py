"""The dial gate: a burst goes at once, then one dial per interval, never more."""

from __future__ import annotations

import asyncio

import pytest

from t3probe.dialgate import DialGate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_slot_per_interval() -> None:
    clock = FakeTime()
    gate = DialGate(clock, rate=100.0, burst=5)
    waits = [gate.reserve() for _ in range(8)]
    assert waits == pytest.approx([0.0] * 5 + [0.01, 0.02, 0.03], abs=1e-9)


def test_idle_time_refills_the_burst_but_no_more() -> None:
    clock = FakeTime()
    gate = DialGate(clock, rate=10.0, burst=3)
    for _ in range(3):
        gate.reserve()
    clock.now += 60.0  # a long quiet spell must not bank more than the burst
    waits = [gate.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1], abs=1e-9)


def test_spread_is_the_time_to_let_all_legs_through() -> None:
    gate = DialGate(FakeTime(), rate=200.0, burst=20)
    assert gate.spread(10) == 0.0
    assert gate.spread(1000) == pytest.approx((1000 - 19) / 200)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 5), (10.0, 0)])
def test_bad_parameters_are_named(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        DialGate(FakeTime(), rate=rate, burst=burst)


async def test_acquire_sleeps_for_its_slot() -> None:
    loop = asyncio.get_running_loop()
    gate = DialGate(loop.time, rate=50.0, burst=1)
    started = loop.time()
    await asyncio.gather(*(gate.acquire() for _ in range(3)))
    # The third dial's slot is two intervals (40 ms) after the first: it cannot go sooner.
    assert loop.time() - started >= 0.04 - 0.002
