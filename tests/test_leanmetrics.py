"""The lean labelled metrics read exactly as prometheus_client's own, byte for byte."""

from __future__ import annotations

import asyncio
import re
import time

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from t3probe import exposition
from t3probe.leanmetrics import LeanCounter, LeanGauge, LeanHistogram

BUCKETS = (0.005, 0.025, 0.1, 2.5)


def _drive(registry: CollectorRegistry, lean: bool) -> None:
    gauge: LeanGauge | Gauge
    counter: LeanCounter | Counter
    histogram: LeanHistogram | Histogram
    if lean:
        gauge = LeanGauge("t_gauge", "a gauge", ["leg"], registry)
        counter = LeanCounter("t_drops", "a counter", ["leg", "why"], registry)
        histogram = LeanHistogram("t_rtt_seconds", "a histogram", ["leg"], registry, BUCKETS)
    else:
        gauge = Gauge("t_gauge", "a gauge", ["leg"], registry=registry)
        counter = Counter("t_drops", "a counter", ["leg", "why"], registry=registry)
        histogram = Histogram("t_rtt_seconds", "a histogram", ["leg"], registry=registry,
                              buckets=BUCKETS)  # fmt: skip
    gauge.labels(leg="a").set(1)
    gauge.labels("b").set(0.5)
    gauge.labels(leg="b").inc(2)
    gauge.labels(leg="gone").set(7)
    gauge.remove("gone")
    gauge.remove("never")  # absent: nothing to do, as prometheus_client
    counter.labels(leg="a", why="reset")
    counter.labels(leg="a", why="rtt_timeout").inc()
    counter.labels(leg="b", why="reset").inc(3)
    # On a bound, between bounds, above every bound, and zero.
    for value in (0.005, 0.0051, 0.2, 99.0, 0.0):
        histogram.labels(leg="a").observe(value)
    histogram.labels(leg="b")


@pytest.mark.parametrize("created", [True, False], ids=["created", "no-created"])
def test_the_exposition_is_prometheus_clients_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch, created: bool
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)
    if not created:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        theirs, ours = CollectorRegistry(), CollectorRegistry()
        _drive(theirs, lean=False)
        _drive(ours, lean=True)
        expected = generate_latest(theirs)
        assert generate_latest(ours) == expected
        assert asyncio.run(exposition.render(ours, chunk_samples=3)) == expected
        assert (b"_created" in expected) is created
    finally:
        prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]
    value = ours.get_sample_value("t_rtt_seconds_bucket", {"leg": "a", "le": "0.005"})
    assert value == 2.0  # 0.0 and 0.005 itself: a bound is inclusive


def test_bad_labels_and_negative_increments_are_refused() -> None:
    registry = CollectorRegistry()
    counter = LeanCounter("t_c", "c", ["leg", "why"], registry)
    with pytest.raises(ValueError, match="label values"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="are not"):
        counter.labels(leg="a")
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("a", "b").inc(-1)
    with pytest.raises(ValueError, match="Duplicated"):
        LeanGauge("t_c_total", "clashes with the counter's sample", ["leg"], registry)


def test_a_nan_observation_counts_in_no_bucket_as_prometheus_clients() -> None:
    # prometheus_client puts a NaN in no bucket (NaN <= bound is false for every bound)
    # and adds it to the sum; bisect would put it in the first one.
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    their_rtt = Histogram("t_rtt_seconds", "h", ["leg"], registry=theirs, buckets=BUCKETS)
    our_rtt = LeanHistogram("t_rtt_seconds", "h", ["leg"], ours, BUCKETS)
    for histogram in (their_rtt, our_rtt):
        for value in (float("nan"), -1.0, float("inf"), float("-inf"), 0.1):
            histogram.labels("a").observe(value)
    for sample in ("t_rtt_seconds_bucket", "t_rtt_seconds_count"):
        for le in ("0.005", "+Inf"):
            labels = {"leg": "a", "le": le} if sample.endswith("_bucket") else {"leg": "a"}
            assert ours.get_sample_value(sample, labels) == theirs.get_sample_value(
                sample, labels
            ), (sample, le)
    assert ours.get_sample_value("t_rtt_seconds_count", {"leg": "a"}) == 4.0


async def test_a_series_renders_whole_while_observations_land_between_slices() -> None:
    # The render lets the loop run between slices, and a histogram's 6 samples span
    # several of them: each series must still be read at one moment (prometheus_client
    # builds a child's samples at once), or its _sum counts an echo its _count does not.
    registry = CollectorRegistry()
    rtt = LeanHistogram("t_rtt_seconds", "h", ["leg"], registry, BUCKETS)
    legs = [f"l{i}" for i in range(20)]
    for leg in legs:
        rtt.labels(leg)
    rendering = True

    async def echoes() -> None:
        while rendering:
            for leg in legs:
                rtt.labels(leg).observe(1.0)  # so each series' _sum equals its _count
            await asyncio.sleep(0)

    task = asyncio.create_task(echoes())
    await asyncio.sleep(0)
    body = await exposition.render(registry, chunk_samples=2, slice_seconds=0)
    rendering = False
    await task
    text = body.decode()
    for leg in legs:
        count = re.search(rf'^t_rtt_seconds_count\{{leg="{leg}"\}} (\S+)$', text, re.M)
        total = re.search(rf'^t_rtt_seconds_sum\{{leg="{leg}"\}} (\S+)$', text, re.M)
        assert count is not None and total is not None
        assert float(count[1]) > 0
        assert float(count[1]) == float(total[1]), leg
