"""Per-leg up/down bookkeeping: which reports are transitions."""

from __future__ import annotations

from t3probe.legstate import RECENT_DROPS_PER_LEG, LegRecord
from t3probe.reasons import Reason


def test_repeated_up_reports_are_one_transition() -> None:
    record = LegRecord("ws", ("lb",))
    assert record.mark_up(1.0) is True
    assert record.mark_up(2.0) is False
    assert (record.state, record.since) == ("up", 1.0)


def test_down_reports_transition_once_per_failure_mode() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0)
    assert record.mark_down(Reason.RESET, 2.0, 102.0) is True  # it was up
    assert record.mark_down(Reason.RESET, 3.0, 103.0) is None  # same failure again
    assert record.mark_down(Reason.CONNECT_REFUSED, 4.0, 104.0) is False  # new mode
    assert [reason for _, reason in record.recent_drops] == [
        Reason.RESET,
        Reason.CONNECT_REFUSED,
    ]
    assert record.observation().reason is Reason.CONNECT_REFUSED


def test_recent_drops_are_bounded_and_on_the_monotonic_clock() -> None:
    record = LegRecord("ws", ("lb",))
    for index in range(RECENT_DROPS_PER_LEG * 2):
        record.mark_up(float(index))
        record.mark_down(Reason.RESET, float(index), 1000.0 + index)
    assert len(record.recent_drops) == RECENT_DROPS_PER_LEG
    assert record.recent_drops[-1][0] == 1000.0 + RECENT_DROPS_PER_LEG * 2 - 1
