"""Attribution, table-driven, straight from the reference config's legs and segments."""

from __future__ import annotations

from typing import Any

import pytest

from t3probe.attribution import LegObservation, LegStatus, Policy, Verdict, compute_verdict
from t3probe.reasons import Reason
from tests.support.reference import SEGMENTS

NOW = 1_000_000.0
WINDOW = 20.0


def _legs(**states: str | Reason | tuple[str, Reason]) -> list[LegObservation]:
    """Leg name → "up", a Reason (down now), or ("up", reason) = recovered after a drop."""
    legs = []
    for name, segments in SEGMENTS.items():
        state = states.get(name, "up")
        if isinstance(state, Reason):
            legs.append(LegObservation(name, segments, "down", state, ((NOW - 1, state),)))
        elif isinstance(state, tuple):
            legs.append(LegObservation(name, segments, "up", None, ((NOW - 5, state[1]),)))
        else:
            legs.append(LegObservation(name, segments, state))  # type: ignore[arg-type]
    return legs


TABLE: list[tuple[str, list[LegObservation], str, tuple[str, ...]]] = [
    ("nothing failing", _legs(), "infra_clean", ()),
    (
        "cloudflare alone",
        _legs(cloudflare=Reason.RESET),
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
    ),
    (
        "both websocket legs",
        _legs(cloudflare=Reason.RTT_TIMEOUT, internal=Reason.RTT_TIMEOUT),
        "suspect",
        ("traefik", "dispatch"),
    ),
    ("t3serve alone", _legs(t3serve=Reason.RTT_TIMEOUT), "suspect", ("t3serve",)),
    (
        "everything",
        _legs(cloudflare=Reason.RESET, internal=Reason.RESET, t3serve=Reason.CONNECT_REFUSED),
        "suspect",
        ("traefik", "dispatch", "t3serve"),
    ),
    (
        "two independent faults",
        _legs(cloudflare=Reason.RESET, t3serve=Reason.HTTP_ERROR),
        "suspect",
        ("wan", "cf_edge", "cf_tunnel", "t3serve"),
    ),
    (
        "flapped within the window",
        _legs(cloudflare=("up", Reason.RESET)),
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
    ),
    (
        "probe stalled",
        _legs(cloudflare=Reason.PROBE_STALL, internal=Reason.RTT_TIMEOUT),
        "probe_unhealthy",
        (),
    ),
    ("route mismatch convicts nothing", _legs(cloudflare=Reason.ROUTE_MISMATCH), "unknown", ()),
    ("dns failure convicts nothing", _legs(cloudflare=Reason.DNS_FAILED), "unknown", ()),
    (
        "legs not yet started",
        _legs(cloudflare="unknown", internal="unknown", t3serve="unknown"),
        "unknown",
        (),
    ),
    (
        "internal alone: its segments are on the healthy cloudflare leg",
        _legs(internal=Reason.RESET),
        "inconclusive",
        (),
    ),
]


@pytest.mark.parametrize(
    ("legs", "verdict", "suspects"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE]
)
def test_attribution_table(
    legs: list[LegObservation], verdict: str, suspects: tuple[str, ...]
) -> None:
    result = compute_verdict(legs, NOW, WINDOW)
    assert (result.verdict, result.suspects) == (verdict, suspects)


def test_an_inconsistent_failure_is_reported_as_unexplained() -> None:
    result = compute_verdict(_legs(internal=Reason.RESET), NOW, WINDOW)
    assert result.unexplained == ("internal",)


def test_a_drop_older_than_the_window_is_forgotten() -> None:
    old = LegObservation(
        "cloudflare", SEGMENTS["cloudflare"], "up", None, ((NOW - WINDOW - 1, Reason.RESET),)
    )
    legs = [old, *_legs()[1:]]
    assert compute_verdict(legs, NOW, WINDOW).verdict == "infra_clean"


def test_flapping_leg_stays_failing_while_it_keeps_dropping() -> None:
    drops = tuple((NOW - age, Reason.RESET) for age in (30, 18, 9, 2))
    flapping = LegObservation("t3serve", SEGMENTS["t3serve"], "up", None, drops)
    legs = [*_legs()[:2], flapping]
    result = compute_verdict(legs, NOW, WINDOW)
    assert result.suspects == ("t3serve",)
    assert result.leg_status["t3serve"] is LegStatus.FAILING


def test_unmeasured_leg_leaves_its_exclusive_segments_unobserved() -> None:
    result = compute_verdict(_legs(cloudflare=Reason.ROUTE_MISMATCH), NOW, WINDOW)
    assert result.unobserved == ("wan", "cf_edge", "cf_tunnel")


def test_ties_with_different_covers_are_all_reported() -> None:
    # A triangle: any two segments explain all three legs; none may be hidden.
    legs = [
        LegObservation("l1", ("a", "c"), "down", Reason.RESET),
        LegObservation("l2", ("a", "b"), "down", Reason.RESET),
        LegObservation("l3", ("b", "c"), "down", Reason.RESET),
    ]
    assert compute_verdict(legs, NOW, WINDOW).suspects == ("a", "c", "b")


POLICY = Policy(window=WINDOW, flap_window=3 * WINDOW, flap_drops=2)


def _obs(name: str, state: str, reason: Reason | None = None, **times: Any) -> LegObservation:
    return LegObservation(name, SEGMENTS[name], state, reason, **times)  # type: ignore[arg-type]


def _verdict(*legs: LegObservation) -> Verdict:
    return compute_verdict(legs, NOW, POLICY)


def test_a_leg_just_back_from_an_outage_holds_before_it_clears_anything() -> None:
    # LB fault healing: internal is back, cloudflare not yet. The gap must not blame the CDN.
    internal = _obs("internal", "up", up_since=NOW - 1, recovered_from=Reason.CONNECT_REFUSED)
    cloudflare = _obs("cloudflare", "down", Reason.CONNECT_REFUSED, last_failure_at=NOW - 2)
    result = _verdict(cloudflare, internal, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("suspect", ("traefik", "dispatch"))
    assert result.leg_status["internal"] is LegStatus.FAILING


def test_a_failure_older_than_a_neighbours_recovery_is_rechecking_not_evidence() -> None:
    internal = _obs("internal", "up", up_since=NOW - 25, recovered_from=Reason.RESET)
    cloudflare = _obs("cloudflare", "down", Reason.RESET, last_failure_at=NOW - 26)
    result = _verdict(cloudflare, internal, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("unknown", ())
    assert result.leg_status["cloudflare"] is LegStatus.RECHECKING


def test_a_failure_after_the_neighbours_recovery_convicts_its_own_segments() -> None:
    internal = _obs("internal", "up", up_since=NOW - 25, recovered_from=Reason.RESET)
    cloudflare = _obs("cloudflare", "down", Reason.RESET, last_failure_at=NOW - 1)
    result = _verdict(cloudflare, internal, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("suspect", ("wan", "cf_edge", "cf_tunnel"))


def test_a_flapping_leg_convicts_while_momentarily_up_and_clears_nothing() -> None:
    drops = ((NOW - 50, Reason.RESET), (NOW - 30, Reason.RTT_TIMEOUT))
    flap: dict[str, Any] = {
        "recent_drops": drops,
        "up_since": NOW - 25,
        "recovered_from": Reason.RTT_TIMEOUT,
    }
    internal = _obs("internal", "up", **flap)
    cloudflare = _obs("cloudflare", "up", **flap)
    result = _verdict(cloudflare, internal, _obs("t3serve", "up"))
    assert result.leg_status["internal"] is LegStatus.FLAPPING
    assert (result.verdict, result.suspects) == ("suspect", ("traefik", "dispatch"))


def test_one_drop_past_the_window_is_not_flapping() -> None:
    once: dict[str, Any] = {"recent_drops": ((NOW - 30, Reason.RESET),), "up_since": NOW - 25}
    cloudflare = _obs("cloudflare", "up", **once)
    result = _verdict(cloudflare, _obs("internal", "up"), _obs("t3serve", "up"))
    assert result.verdict == "infra_clean"


def test_a_partial_fault_nobody_can_explain_is_inconclusive_never_an_empty_suspicion() -> None:
    # One RST into internal while cloudflare, crossing the same LB, stayed up.
    internal = _obs("internal", "up", recent_drops=((NOW - 5, Reason.RESET),), up_since=NOW - 4)
    result = _verdict(_obs("cloudflare", "up"), internal, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects, result.unexplained) == (
        "inconclusive",
        (),
        ("internal",),
    )


def test_no_network_on_the_probe_itself_is_probe_unhealthy() -> None:
    legs = [_obs(name, "down", Reason.PROBE_NETWORK, last_failure_at=NOW) for name in SEGMENTS]
    result = _verdict(*legs)
    assert (result.verdict, result.suspects) == ("probe_unhealthy", ())


def test_one_leg_on_the_probes_own_network_error_convicts_nothing() -> None:
    cloudflare = _obs("cloudflare", "down", Reason.PROBE_NETWORK, last_failure_at=NOW)
    result = _verdict(cloudflare, _obs("internal", "up"), _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("unknown", ())
    assert result.leg_status["cloudflare"] is LegStatus.UNMEASURED


@pytest.mark.parametrize(
    ("control_up", "suspects"), [(False, ("uplink",)), (True, ("lb", "backend"))]
)
def test_a_control_leg_tells_the_uplink_from_everything_behind_it(
    control_up: bool, suspects: tuple[str, ...]
) -> None:
    def down(name: str, segments: tuple[str, ...]) -> LegObservation:
        return LegObservation(name, segments, "down", Reason.CONNECT_TIMEOUT, last_failure_at=NOW)

    control = (
        LegObservation("control", ("uplink",), "up") if control_up else down("control", ("uplink",))
    )
    legs = [control, down("ws", ("uplink", "lb")), down("backend", ("uplink", "backend"))]
    result = compute_verdict(legs, NOW, POLICY)
    assert (result.verdict, result.suspects) == ("suspect", suspects)


def test_a_fresh_drop_a_neighbour_has_not_answered_since_is_rechecking() -> None:
    # LB blackhole onset: cloudflare's watchdog ran out first; internal's last echo is
    # older than that drop, so it cannot clear traefik/dispatch yet. Nobody is blamed.
    cloudflare = _obs(
        "cloudflare",
        "down",
        Reason.RTT_TIMEOUT,
        recent_drops=((NOW - 0.5, Reason.RTT_TIMEOUT),),
        last_failure_at=NOW - 0.5,
    )
    internal = _obs("internal", "up", up_since=NOW - 100, last_success_at=NOW - 1.5)
    result = _verdict(cloudflare, internal, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("unknown", ())
    assert result.leg_status["cloudflare"] is LegStatus.RECHECKING
    # Its next echo arrives: now it clears the shared segments and the CDN is convicted.
    answered = _obs("internal", "up", up_since=NOW - 100, last_success_at=NOW - 0.1)
    result = _verdict(cloudflare, answered, _obs("t3serve", "up"))
    assert (result.verdict, result.suspects) == ("suspect", ("wan", "cf_edge", "cf_tunnel"))
