"""The verdict replayed over time and split into incidents. Pure, with the lab's legs."""

from __future__ import annotations

import pytest

from t3probe.attribute import eventsource
from t3probe.attribute.incidents import incidents, sentence
from t3probe.attribute.model import TimePoint, window_for
from t3probe.attribute.timeline import Change, LegHistory, lead, replay
from t3probe.attribution import LegStatus, Policy, VerdictName
from t3probe.reasons import Reason

CDN = ("wan", "cf_edge", "cf_tunnel", "traefik", "dispatch")
LB = ("traefik", "dispatch")
POLICY = Policy(window=20.0, flap_window=60.0)
T0 = 1000.0


def history(name: str, segments: tuple[str, ...], *changes: Change) -> LegHistory:
    return LegHistory(name, segments, T0, True, changes=changes)


def two_faults() -> list[LegHistory]:
    """A CDN-only fault at T0+60 for 10 s, an LB fault 40 s later for 10 s."""
    cdn, lb = T0 + 60, T0 + 100
    return [
        history(
            "cloudflare",
            CDN,
            Change(cdn, False, Reason.RESET),
            Change(cdn + 10, True),
            Change(lb, False, Reason.RESET),
            Change(lb + 10, True),
        ),
        history("internal", LB, Change(lb + 0.3, False, Reason.RESET), Change(lb + 10, True)),
        history("t3serve", ("t3serve",)),
    ]


def test_two_faults_40_s_apart_are_two_incidents() -> None:
    result = replay(two_faults(), T0, T0 + 180, POLICY)
    assert [(i.verdict, i.suspects) for i in result.incidents] == [
        (VerdictName.SUSPECT, ("wan", "cf_edge", "cf_tunnel")),
        (VerdictName.SUSPECT, ("traefik", "dispatch")),
    ]
    cdn, lb = result.incidents
    assert cdn.start == T0 + 60 and lb.start == T0 + 100
    assert [leg.name for leg in cdn.legs] == ["cloudflare"]
    assert {leg.name for leg in lb.legs} == {"cloudflare", "internal"}
    assert all(leg.reasons == (Reason.RESET,) for leg in lb.legs)
    assert lead(result.incidents, T0 + 65) is cdn
    assert lead(result.incidents, T0 + 105) is lb
    # Nearest: 20 s after the LB incident's hold ended is still that one.
    assert lead(result.incidents, lb.end + 20) is lb


def test_before_first_data_is_no_data_not_evidence() -> None:
    late = [
        LegHistory("cloudflare", CDN, T0 + 50, True),
        LegHistory("internal", LB, T0 + 50, True),
    ]
    result = replay(late, T0, T0 + 100, POLICY)
    assert result.incidents == ()
    assert result.first_data == T0 + 50
    first = result.steps[0]
    assert not first.observed and first.verdict.verdict is VerdictName.UNKNOWN
    assert result.steps[-1].verdict.verdict is VerdictName.INFRA_CLEAN


def test_gap_is_unknown_and_ends_a_clean_stretch() -> None:
    gappy = LegHistory("internal", LB, T0, True, gaps=((T0 + 10, T0 + 30),))
    result = replay([gappy], T0, T0 + 60, POLICY)
    verdicts = [(s.start, s.verdict.verdict) for s in result.steps]
    assert (T0 + 10, VerdictName.UNKNOWN) in verdicts
    assert verdicts[-1][1] is VerdictName.INFRA_CLEAN and result.incidents == ()


def test_events_source_two_faults_give_two_answers() -> None:
    """The same two faults through a probe's /verdict + /events, as eventsource reads them."""
    segments = {"cloudflare": CDN, "internal": LB, "t3serve": ("t3serve",)}
    legs = {
        name: {"state": "up", "since": T0 + 110, "segments": list(segs)}
        for name, segs in segments.items()
    }
    legs["t3serve"]["since"] = T0 - 100
    verdict = {"at": T0 + 300, "legs": legs}
    events: list[dict[str, object]] = [
        {"leg": leg, "kind": kind, "at": T0 + offset, "reason": reason}
        for leg, kind, offset, reason in (
            ("cloudflare", "up", -100, None),
            ("internal", "up", -100, None),
            ("cloudflare", "down", 60, "reset"),
            ("cloudflare", "up", 70, None),
            ("cloudflare", "down", 100, "reset"),
            ("internal", "down", 100.3, "reset"),
            ("cloudflare", "up", 110, None),
            ("internal", "up", 110, None),
        )
    ]
    for at, wanted in ((T0 + 65, ("wan", "cf_edge", "cf_tunnel")), (T0 + 105, LB)):
        window = window_for(TimePoint(at), 60.0, T0 + 300)
        evidence = eventsource.evidence("u", window, verdict, {"events": events}, T0 + 300, 80.0)
        found = incidents(evidence, POLICY)
        assert found.lead is not None and found.lead.suspects == wanted, found.incidents


def test_a_slow_cdn_leg_is_a_degraded_incident_not_a_fault() -> None:
    """Three minutes slow, never down: one incident of its own kind, the CDN segments."""
    legs = [
        LegHistory("cloudflare", CDN, T0, True, slow=((T0 + 60, T0 + 240),)),
        history("internal", LB),
        history("t3serve", ("t3serve",)),
    ]
    result = replay(legs, T0, T0 + 400, POLICY)
    assert [(i.verdict, i.suspects) for i in result.incidents] == [
        (VerdictName.DEGRADED, ("wan", "cf_edge", "cf_tunnel"))
    ]
    (slow,) = result.incidents
    # Slowness counts for the attribution window after it was last seen, as live.
    assert slow.start == T0 + 60
    assert slow.end == pytest.approx(T0 + 240 + POLICY.window, abs=0.01)
    assert [(leg.name, leg.status, leg.reasons) for leg in slow.legs] == [
        ("cloudflare", LegStatus.DEGRADED, ())
    ]
    assert sentence(slow).startswith("degraded (slow, not down) — slow segments wan, cf_edge")
    assert "fault" not in sentence(slow)


def test_a_slow_leg_no_segment_explains_is_degraded_without_suspects() -> None:
    legs = [
        LegHistory("cloudflare", CDN, T0, True, slow=((T0 + 60, T0 + 90),)),
        history("wan_twin", CDN),
    ]
    (slow,) = replay(legs, T0, T0 + 200, POLICY).incidents
    assert (slow.verdict, slow.suspects) == (VerdictName.DEGRADED, ())
    assert "no segment explains it" in sentence(slow)


def test_a_hard_fault_after_slowness_says_the_path_was_slow_first() -> None:
    cdn = (*CDN[:3],)
    legs = [
        LegHistory(
            "cloudflare",
            CDN,
            T0,
            True,
            changes=(Change(T0 + 90, False, Reason.RESET), Change(T0 + 100, True)),
            slow=((T0 + 60, T0 + 90),),
        ),
        history("internal", LB),
    ]
    result = replay(legs, T0, T0 + 200, POLICY)
    slow, fault = result.incidents
    assert (slow.verdict, slow.suspects, slow.start, slow.end) == (
        VerdictName.DEGRADED,
        cdn,
        T0 + 60,
        T0 + 90,
    )
    assert (fault.verdict, fault.suspects, fault.start) == (VerdictName.SUSPECT, cdn, T0 + 90)
    assert fault.slow_before is slow
    assert sentence(fault).startswith("infra fault — suspect segments wan, cf_edge, cf_tunnel")
    # The fault's hold ends a window after the leg came back: the slowness before the drop
    # is older than that, so the path is clean again, not "degraded".
    assert result.steps[-1].verdict.verdict is VerdictName.INFRA_CLEAN


def test_events_source_degraded_recovered_and_a_down_ending_slowness() -> None:
    segments = {"cloudflare": CDN, "internal": LB}
    legs = {
        name: {"state": "up", "since": T0 - 100, "segments": list(segs)}
        for name, segs in segments.items()
    }
    legs["cloudflare"]["since"] = T0 + 100
    verdict = {"at": T0 + 300, "legs": legs}
    events: list[dict[str, object]] = [
        {"leg": leg, "kind": kind, "at": T0 + offset, "reason": reason}
        for leg, kind, offset, reason in (
            ("cloudflare", "up", -100, None),
            ("internal", "up", -100, None),
            ("cloudflare", "degraded", 60, None),
            ("cloudflare", "down", 90, "reset"),
            ("cloudflare", "up", 100, None),
            ("cloudflare", "degraded", 200, None),
            ("cloudflare", "recovered", 230, None),
        )
    ]
    window = window_for(TimePoint(T0 + 150), 300.0, T0 + 300)
    evidence = eventsource.evidence("u", window, verdict, {"events": events}, T0 + 300, 80.0)
    (cloudflare, _) = evidence.histories
    # The down ended the first slowness: no "recovered" needed, as in the live probe.
    assert cloudflare.slow == ((T0 + 60, T0 + 90), (T0 + 200, T0 + 230))
    # Slowness events are not drops, nor ups.
    assert [c.at for c in cloudflare.changes] == [T0 - 100, T0 + 90, T0 + 100]
    assert [e.drop_total for e in evidence.legs] == [1, 0]
    found = incidents(evidence, POLICY)
    cdn = ("wan", "cf_edge", "cf_tunnel")
    assert [(i.verdict, i.suspects, i.start) for i in found.incidents] == [
        (VerdictName.DEGRADED, cdn, T0 + 60),
        (VerdictName.SUSPECT, cdn, T0 + 90),
        (VerdictName.DEGRADED, cdn, T0 + 200),
    ]
    assert found.incidents[2].end == pytest.approx(T0 + 250, abs=0.01)


def test_events_of_several_connections_replay_as_the_legs_partial_outage() -> None:
    """Half of each WebSocket leg's four connections reset: each connection's drop is a
    drop, the leg is down from the first of them until the last is back, and the replay
    convicts the shared segments (as the live probe did)."""
    legs = {
        name: {"state": "up", "since": T0 + 120, "segments": list(segs)}
        for name, segs in {"cloudflare": CDN, "internal": LB}.items()
    }
    events: list[dict[str, object]] = [
        {"leg": leg, "kind": "up", "at": T0 - 100, "reason": None, "connection": index}
        for leg in ("cloudflare", "internal")
        for index in range(4)
    ]
    for leg in ("cloudflare", "internal"):
        events += [
            {"leg": leg, "kind": "down", "at": T0 + 100, "reason": "reset", "connection": 0},
            {"leg": leg, "kind": "down", "at": T0 + 100.002, "reason": "reset", "connection": 2},
            {"leg": leg, "kind": "burst", "at": T0 + 101, "reason": "reset", "connection": None},
            {"leg": leg, "kind": "up", "at": T0 + 101, "reason": None, "connection": 0},
            {"leg": leg, "kind": "up", "at": T0 + 102, "reason": None, "connection": 2},
        ]
    verdict = {"at": T0 + 300, "legs": legs}
    window = window_for(TimePoint(T0 + 100), 300.0, T0 + 300)
    evidence = eventsource.evidence("u", window, verdict, {"events": events}, T0 + 300, 80.0)
    _, internal = evidence.histories
    assert [(c.at, c.up) for c in internal.changes] == [
        (T0 - 100, True),  # four connections coming up are one leg coming up
        (T0 + 100, False),
        (T0 + 102, True),
    ]
    assert [e.drop_total for e in evidence.legs] == [2, 2]
    found = incidents(evidence, POLICY)
    assert [(i.verdict, i.suspects) for i in found.incidents] == [
        (VerdictName.SUSPECT, ("traefik", "dispatch"))
    ]


def test_a_hard_fault_reads_as_before_while_another_leg_is_slow() -> None:
    """The backend slow throughout the CDN fault: the fault's suspects are the fault's."""
    legs = two_faults()
    legs[2] = LegHistory("t3serve", ("t3serve",), T0, True, slow=((T0 + 50, T0 + 80),))
    result = replay(legs, T0, T0 + 180, POLICY)
    slow, cdn, *_ = result.incidents
    assert (slow.verdict, slow.suspects, slow.start) == (
        VerdictName.DEGRADED,
        ("t3serve",),
        T0 + 50,
    )
    assert (cdn.verdict, cdn.suspects) == (VerdictName.SUSPECT, ("wan", "cf_edge", "cf_tunnel"))
    assert [leg.name for leg in cdn.legs] == ["cloudflare"]
    # The slowness is no cause of this fault (other segments): said apart, not blended in.
    assert cdn.slow_meanwhile == ("t3serve",) and cdn.slow_before is None
    assert sentence(cdn) == (
        "infra fault — suspect segments wan, cf_edge, cf_tunnel (failing: leg cloudflare)"
    )
