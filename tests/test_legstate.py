"""Per-leg up/down bookkeeping: which reports are transitions, and the evidence's times."""

from __future__ import annotations

from t3probe.legstate import RECENT_DROPS_PER_LEG, LegRecord
from t3probe.reasons import Reason


def test_repeated_up_reports_are_one_transition() -> None:
    record = LegRecord("ws", ("lb",))
    assert record.mark_up(1.0, 101.0) is True
    assert record.mark_up(2.0, 102.0) is False
    assert (record.state, record.since, record.up_since) == ("up", 1.0, 101.0)
    assert record.recovered_from is None  # it came up from unknown, not from a failure


def test_down_reports_transition_once_per_failure_mode() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 101.0)
    assert record.mark_down(Reason.RESET, 2.0, 102.0) is True  # it was up
    assert record.mark_down(Reason.RESET, 3.0, 103.0) is None  # same failure again
    assert record.mark_down(Reason.CONNECT_REFUSED, 4.0, 104.0) is False  # new mode
    # One drop: a change of failure mode while down is not another drop.
    assert [reason for _, reason in record.recent_drops] == [Reason.RESET]
    assert record.observation().reason is Reason.CONNECT_REFUSED


def test_every_failed_attempt_moves_the_evidence_time() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_down(Reason.RESET, 2.0, 102.0)
    record.mark_down(Reason.RESET, 3.0, 103.0)
    assert record.last_failure_at == 103.0
    record.mark_up(4.0, 104.0)
    observed = record.observation()
    assert (observed.up_since, observed.recovered_from) == (104.0, Reason.RESET)


def test_recent_drops_are_bounded_and_on_the_monotonic_clock() -> None:
    record = LegRecord("ws", ("lb",))
    for index in range(RECENT_DROPS_PER_LEG * 2):
        record.mark_up(float(index), 1000.0 + index)
        record.mark_down(Reason.RESET, float(index), 1000.0 + index)
    assert len(record.recent_drops) == RECENT_DROPS_PER_LEG
    assert record.recent_drops[-1][0] == 1000.0 + RECENT_DROPS_PER_LEG * 2 - 1


def test_an_answer_dates_the_evidence_from_when_its_heartbeat_was_sent() -> None:
    # A 2 s echo arriving at 110 shows the path worked at 108, not at 110: a neighbour
    # that dropped at 109 is not contradicted by it.
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 100.0)
    record.mark_success(2.0, 110.0)
    assert record.observation().last_success_at == 108.0
    assert record.last_rtt == 2.0


def test_a_new_failure_mode_while_down_keeps_the_outage_start() -> None:
    record = LegRecord("ws", ("lb",))
    record.mark_up(1.0, 101.0)
    record.mark_down(Reason.RESET, 2.0, 102.0)
    record.mark_down(Reason.CONNECT_REFUSED, 4.0, 104.0)
    # The leg has been down since the drop, whatever its reconnects meet meanwhile.
    assert (record.since, record.reason) == (2.0, Reason.CONNECT_REFUSED)
    record.mark_up(5.0, 105.0)
    assert record.since == 5.0
