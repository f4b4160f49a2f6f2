"""Attribution, table-driven, straight from the reference config's legs and segments."""

from __future__ import annotations

import pytest

from t3probe.attribution import LegObservation, LegStatus, compute_verdict
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
        "suspect",
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
