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
from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from t3probe.leanmetrics import LeanFamily

# Samples rendered in one go (about 2 ms on a loaded 2-core machine: 500 took 11 ms), and
# how long the loop may be held before it is let go.
CHUNK_SAMPLES = 100
SLICE_SECONDS = 0.004
# Samples generate_latest moves into families of their own after the main one.
_APART = ("_created", "_gsum", "_gcount")


class _One(Collector):
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return (self._family,)


def _chunks(family: Metric, samples: Iterable[Sample], size: int) -> Iterator[Metric]:
    """``samples`` of ``family`` ``size`` at a time, as they come: each chunk is rendered
    and dropped before the next is built, so the samples die young instead of piling up
    (and walking a pile of half a million tuples is what a full collection does). The
    samples generate_latest moves into families of their own (``_created``) come once,
    with the last chunk, after all of the main family."""
    apart = tuple(family.name + suffix for suffix in _APART)
    tail: list[Sample] = []
    chunk: list[Sample] = []
    for sample in samples:
        if sample.name in apart:
            tail.append(sample)
            continue
        chunk.append(sample)
        if len(chunk) == size:
            yield _part(family, chunk)
            chunk = []
    yield _part(family, chunk + tail)


def _part(family: Metric, samples: list[Sample]) -> Metric:
    part = copy.copy(family)
    part.samples = samples
    return part


def _families(registry: Collector) -> Iterator[tuple[Metric, Iterable[Sample]]]:
    """Each family with its samples, those of a labelled metric generated lazily: its
    collect() would build every child's samples in one go (ten thousand legs' RTT
    histograms: 170,000 tuples). Other collectors (process, platform) are small."""
    collectors = getattr(registry, "_collector_to_names", None)
    if collectors is None:
        for family in registry.collect():
            yield family, family.samples
        return
    for collector in list(collectors):
        if isinstance(collector, LeanFamily):
            yield collector.family(), collector.samples()
        elif isinstance(collector, MetricWrapperBase):
            # prometheus_client internals (pinned in uv.lock): tests/test_exposition.py
            # holds the output to generate_latest's, byte for byte.
            family = collector._get_metric()  # type: ignore[no-untyped-call]
            yield family, _samples_of(collector)
        else:
            for family in collector.collect():
                yield family, family.samples


def _samples_of(collector: MetricWrapperBase) -> Iterator[Sample]:
    name = collector._name
    for suffix, labels, value, timestamp, exemplar, native in collector._samples():
        yield Sample(name + suffix, labels, value, timestamp, exemplar, native)


class _Slicer:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._deadline = time.perf_counter() + seconds

    async def maybe_yield(self) -> None:
        if time.perf_counter() >= self._deadline:
            await asyncio.sleep(0)
            self._deadline = time.perf_counter() + self._seconds


async def render(
    registry: Collector, chunk_samples: int = CHUNK_SAMPLES, slice_seconds: float = SLICE_SECONDS
) -> bytes:
    parts: list[bytes] = []
    slicer = _Slicer(slice_seconds)
    for family, samples in _families(registry):
        for i, chunk in enumerate(_chunks(family, samples, chunk_samples)):
            text = generate_latest(_One(chunk))
            if i:
                # HELP and TYPE once per family: drop them from every later chunk.
                text = text.split(b"\n", 2)[2]
            parts.append(text)
            await slicer.maybe_yield()
    return b"".join(parts)
