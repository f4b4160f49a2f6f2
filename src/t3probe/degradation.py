"""Is a leg slow? Its RTT against its own learnt baseline, and the heartbeats it loses.

Pure: the recorder feeds samples in and reads the state out.

The baseline is the median of the leg's recent round trips (a bounded window), learnt
only from samples that were not themselves slow: degradation cannot poison the yardstick
it is measured with. A leg whose round trips stay slow for good still moves it, slowly:
one slow sample in ``admit_every`` is admitted, so a permanent route change is learnt
over about ``baseline_samples / 2 * admit_every`` heartbeats (10 minutes at the lab's
1 s heartbeat, 100 at production's 10 s) instead of never.

The leg is degraded while the median of its last ``recent`` round trips exceeds the
threshold (``ratio`` x baseline and baseline + ``margin``, or the leg's absolute
``rtt_threshold_seconds``), or while it lost ``loss_share`` of its recent heartbeats. A
median of several samples needs several slow heartbeats in a row: one spike is jitter.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass

DEFAULT_RATIO = 3.0
DEFAULT_MARGIN_SECONDS = 0.1
DEFAULT_LOSS_SHARE = 0.3


@dataclass(frozen=True)
class DegradationPolicy:
    ratio: float = DEFAULT_RATIO
    margin_seconds: float = DEFAULT_MARGIN_SECONDS
    # Absolute per-leg threshold: judged from the first sample, no baseline needed.
    threshold_seconds: float | None = None
    loss_share: float = DEFAULT_LOSS_SHARE
    recent: int = 5
    baseline_samples: int = 120
    warmup: int = 5
    admit_every: int = 10
    loss_window: int = 10


class RttTracker:
    """One leg's round trips and lost heartbeats; bounded whatever the leg does."""

    def __init__(self, policy: DegradationPolicy) -> None:
        self.policy = policy
        self._baseline: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []
        self._recent: collections.deque[float] = collections.deque(maxlen=policy.recent)
        # True for a lost heartbeat, False for an answered one.
        self._answers: collections.deque[bool] = collections.deque(maxlen=policy.loss_window)
        self._slow_seen = 0
        self.degraded = False

    @property
    def baseline(self) -> float | None:
        if len(self._sorted) < self.policy.warmup:
            return None
        return _median_of_sorted(self._sorted)

    def threshold(self) -> float | None:
        if self.policy.threshold_seconds is not None:
            return self.policy.threshold_seconds
        baseline = self.baseline
        if baseline is None:
            return None
        return max(baseline * self.policy.ratio, baseline + self.policy.margin_seconds)

    def is_slow(self, rtt: float) -> bool:
        threshold = self.threshold()
        return threshold is not None and rtt > threshold

    def observe(self, rtt: float) -> bool:
        """Take an answered heartbeat; True when the degraded state changed."""
        slow = self.is_slow(rtt)
        if slow:
            self._slow_seen += 1
        if not slow or self._slow_seen % self.policy.admit_every == 0:
            self._learn(rtt)
        self._recent.append(rtt)
        self._answers.append(False)
        return self._judge()

    def lost(self, count: int) -> bool:
        """Take ``count`` heartbeats that will never be answered; True on a change."""
        for _ in range(min(count, self.policy.loss_window)):
            self._answers.append(True)
        return self._judge()

    def new_connection(self) -> bool:
        """A new connection starts with no recent samples (the baseline stays): a leg that
        dropped is failing, not slow. True when that ended a degradation."""
        self._recent.clear()
        self._answers.clear()
        return self._judge()

    def recent_rtt(self) -> float | None:
        return _median(list(self._recent)) if self._recent else None

    def loss_ratio(self) -> float:
        return sum(self._answers) / len(self._answers) if self._answers else 0.0

    def detail(self) -> str:
        """Why the leg is (or was) degraded, for the event."""
        parts = []
        recent, threshold = self.recent_rtt(), self.threshold()
        if recent is not None and threshold is not None:
            baseline = self.baseline
            against = (
                f"baseline {baseline:.3f}s, threshold {threshold:.3f}s"
                if baseline is not None and self.policy.threshold_seconds is None
                else f"threshold {threshold:.3f}s"
            )
            parts.append(f"median RTT {recent:.3f}s of the last {len(self._recent)} ({against})")
        if any(self._answers):
            parts.append(f"{sum(self._answers)} of the last {len(self._answers)} heartbeats lost")
        return "; ".join(parts)

    def _learn(self, rtt: float) -> None:
        if len(self._baseline) == self.policy.baseline_samples:
            oldest = self._baseline.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._baseline.append(rtt)
        bisect.insort(self._sorted, rtt)

    def _judge(self) -> bool:
        before = self.degraded
        self.degraded = self._slow() or self._lossy()
        return self.degraded != before

    def _slow(self) -> bool:
        threshold = self.threshold()
        # A median needs a majority of the window: at least three samples.
        if threshold is None or len(self._recent) < min(3, self.policy.recent):
            return False
        return _median(list(self._recent)) > threshold

    def _lossy(self) -> bool:
        if len(self._answers) < self.policy.loss_window // 2:
            return False
        return self.loss_ratio() >= self.policy.loss_share


def _median(values: list[float]) -> float:
    return _median_of_sorted(sorted(values))


def _median_of_sorted(values: list[float]) -> float:
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2
