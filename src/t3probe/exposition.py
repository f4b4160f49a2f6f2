"""The /metrics exposition rendered on the probe's own loop, a slice at a time.

Rendering ten thousand legs' series takes a few hundred milliseconds of pure Python.
In a worker thread it still holds the interpreter: each time the loop thread lets go of
it for a system call (every socket send), the render keeps it for a whole switch
interval, and a thousand legs' heartbeats queue up behind it. Here it runs on the loop
instead, in slices of a few milliseconds with the loop free in between, byte for byte
the output of ``prometheus_client.generate_latest``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Samples rendered in one go, and how long the loop may be held before it is let go.
CHUNK_SAMPLES = 500
SLICE_SECONDS = 0.004
# Samples generate_latest moves into families of their own after the main one.
_APART = ("_created", "_gsum", "_gcount")


class _One(Collector):
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return (self._family,)


def _chunks(family: Metric, size: int) -> Iterator[Metric]:
    apart = tuple(family.name + suffix for suffix in _APART)
    main = [s for s in family.samples if s.name not in apart]
    tail = [s for s in family.samples if s.name in apart]
    starts = range(0, max(len(main), 1), size)
    for i, start in enumerate(starts):
        chunk = copy.copy(family)
        last = i == len(starts) - 1
        # The families split off (_created) must come once, after all of the main one.
        chunk.samples = main[start : start + size] + (tail if last else [])
        yield chunk


def _render_family(family: Metric, size: int) -> Iterator[bytes]:
    for i, chunk in enumerate(_chunks(family, size)):
        text = generate_latest(_One(chunk))
        if i:
            # HELP and TYPE once per family: drop them from every later slice.
            text = text.split(b"\n", 2)[2]
        yield text


class _Slicer:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._deadline = time.perf_counter() + seconds

    async def maybe_yield(self) -> None:
        if time.perf_counter() >= self._deadline:
            await asyncio.sleep(0)
            self._deadline = time.perf_counter() + self._seconds


async def _families(registry: Collector, chunk: int, slicer: _Slicer) -> AsyncIterator[Metric]:
    # A labelled metric's collect() builds every child's samples in one go (a thousand
    # legs' RTT histograms: tens of milliseconds); its sample generator is walked here
    # instead, with the loop let go in between. Other collectors (process, platform) are
    # small and collected as they are.
    collectors = getattr(registry, "_collector_to_names", None)
    if collectors is None:
        for family in registry.collect():
            yield family
        return
    for collector in list(collectors):
        if not isinstance(collector, MetricWrapperBase):
            for family in collector.collect():
                yield family
            await slicer.maybe_yield()
            continue
        # prometheus_client internals (pinned in uv.lock): tests/test_exposition.py holds
        # this to generate_latest's output, byte for byte.
        family = collector._get_metric()  # type: ignore[no-untyped-call]
        for i, sample in enumerate(collector._samples()):
            suffix, labels, value, timestamp, exemplar, native = sample
            family.add_sample(collector._name + suffix, labels, value, timestamp, exemplar, native)
            if i % chunk == 0:
                await slicer.maybe_yield()
        yield family


async def render(
    registry: Collector, chunk_samples: int = CHUNK_SAMPLES, slice_seconds: float = SLICE_SECONDS
) -> bytes:
    parts: list[bytes] = []
    slicer = _Slicer(slice_seconds)
    async for family in _families(registry, chunk_samples, slicer):
        for part in _render_family(family, chunk_samples):
            parts.append(part)
            await slicer.maybe_yield()
    return b"".join(parts)
