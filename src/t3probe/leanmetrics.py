"""Labelled counters, gauges and histograms that cost a leg a few hundred bytes.

prometheus_client keeps every series of a labelled metric as a child object holding a
value object with its own lock (a histogram: one per bucket): about 20 KB per leg at 70
series, a third of what a leg costs (docs/benchmarks.md). The probe's metrics are only
ever touched from its event loop (the exposition renders on it too), so a series here is
a float (a histogram: a list of bucket counts) in a slotted object, with no lock.

The exposition is prometheus_client's own: :meth:`collect` yields the same families with
the same samples in the same order, so ``generate_latest`` and
``registry.get_sample_value`` read these exactly as they read prometheus_client's own
metrics (``tests/test_leanmetrics.py`` holds the two byte for byte).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


def _created_enabled() -> bool:
    # prometheus_client's own switch (disable_created_metrics(), or its environment
    # variable): these follow it as its metrics do.
    return bool(getattr(client_metrics, "_use_created", True))


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        yield "", {}, self.value


class CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        yield "_total", {}, self.value
        if _created_enabled():
            yield "_created", {}, self.created


class HistogramChild:
    __slots__ = ("bounds", "counts", "created", "les", "sum")

    def __init__(self, bounds: Sequence[float], les: Sequence[str]) -> None:
        # Both shared by every series of the family.
        self.bounds = bounds
        self.les = les
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is at least the amount, as prometheus_client's;
        # a NaN is at most no bound, so it counts in none (bisect would say the first).
        if amount == amount:
            self.counts[bisect.bisect_left(self.bounds, amount)] += 1.0
        self.sum += amount

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        # Read at once: the render lets the loop run between its slices, and an echo
        # observed between this series' buckets and its sum would make them disagree.
        counts, observed_sum = list(self.counts), self.sum
        total = 0.0
        for le, count in zip(self.les, counts, strict=True):
            total += count
            yield "_bucket", {"le": le}, total
        yield "_count", {}, total
        yield "_sum", {}, observed_sum
        if _created_enabled():
            yield "_created", {}, self.created


Child = TypeVar("Child", GaugeChild, CounterChild, HistogramChild)


class LeanFamily(Generic[Child]):
    """A labelled metric: ``labels(...)`` gives (and creates) a series, ``remove(...)``
    drops one; registered on ``registry`` like a prometheus_client metric."""

    kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        if not labelnames:
            raise ValueError(f"{name}: a lean metric needs label names")
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)

    def _new_child(self) -> Child:
        raise NotImplementedError

    def labels(self, *values: str, **by_name: str) -> Child:
        # Every echo of every leg comes here: an existing series by position, at once.
        child = self._children.get(values) if not by_name else None
        if child is not None:
            return child
        if values and by_name:
            raise ValueError("label values by position or by name, not both")
        if by_name:
            if set(by_name) != set(self._labelnames):
                raise ValueError(
                    f"{self._name}: labels {sorted(by_name)} are not {self._labelnames}"
                )
            values = tuple(by_name[name] for name in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: {len(values)} label values for {self._labelnames}")
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def remove(self, *values: str) -> None:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: {len(values)} label values for {self._labelnames}")
        self._children.pop(tuple(str(value) for value in values), None)

    def family(self) -> Metric:
        """The family without its samples."""
        return Metric(self._name, self._documentation, self.kind)

    def samples(self) -> Iterator[Sample]:
        """Every series' samples, made as they are read (a render streams them)."""
        names = self._labelnames
        for key, child in list(self._children.items()):
            labels = dict(zip(names, key, strict=True))
            for suffix, extra, value in child.samples():
                yield Sample(self._name + suffix, {**labels, **extra} if extra else labels, value)

    def describe(self) -> Iterable[Metric]:
        return (self.family(),)

    def collect(self) -> Iterable[Metric]:
        family = self.family()
        family.samples = list(self.samples())
        return (family,)


class LeanGauge(LeanFamily[GaugeChild]):
    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()


class LeanCounter(LeanFamily[CounterChild]):
    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()


class LeanHistogram(LeanFamily[HistogramChild]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        bounds = sorted(float(bound) for bound in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        # As prometheus_client spells them ("0.005", "+Inf").
        self._les = tuple(str(floatToGoString(bound)) for bound in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds, self._les)
