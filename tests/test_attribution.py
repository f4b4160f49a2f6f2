"""Attribution, table-driven, straight from the reference config's legs and segments."""

from __future__ import annotations

import random
from typing import Any

import pytest

from t3probe import attribution
from t3probe.attribution import (
    LegObservation,
    LegStatus,
    LinkState,
    Policy,
    Verdict,
    compute_verdict,
    leg_status,
)
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


def _stalled_then(cloudflare_state: str, **times: Any) -> list[LegObservation]:
    """Every leg dropped for the probe's own 3 s freeze 10 s ago; cloudflare then as given."""
    stall = ((NOW - 10, Reason.PROBE_STALL),)
    back: dict[str, Any] = {"up_since": NOW - 9, "recovered_from": Reason.PROBE_STALL}
    internal = _obs("internal", "up", recent_drops=stall, last_success_at=NOW - 0.5, **back)
    t3serve = _obs("t3serve", "up", recent_drops=stall, last_success_at=NOW - 0.5, **back)
    return [_obs("cloudflare", cloudflare_state, recent_drops=stall, **times), internal, t3serve]


_FLAP: dict[str, Any] = {
    "recent_drops": ((NOW - 50, Reason.RESET), (NOW - 30, Reason.RTT_TIMEOUT)),
    "up_since": NOW - 25,
    "recovered_from": Reason.RTT_TIMEOUT,
}
_FRESH_DROP = _obs(
    "cloudflare",
    "down",
    Reason.RTT_TIMEOUT,
    recent_drops=((NOW - 0.5, Reason.RTT_TIMEOUT),),
    last_failure_at=NOW - 0.5,
)

# The edges of a fault (issue #12): evidence with a time, flapping, the probe's own
# failures. (name, legs, verdict, suspects, statuses the row is about, unexplained)
TIMED_TABLE: list[
    tuple[str, list[LegObservation], str, tuple[str, ...], dict[str, LegStatus], tuple[str, ...]]
] = [
    (
        # LB fault healing: internal is back, cloudflare not yet. The gap must not blame
        # the CDN.
        "a leg just back from an outage holds before it clears anything",
        [
            _obs("cloudflare", "down", Reason.CONNECT_REFUSED, last_failure_at=NOW - 2),
            _obs("internal", "up", up_since=NOW - 1, recovered_from=Reason.CONNECT_REFUSED),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("traefik", "dispatch"),
        {"internal": LegStatus.FAILING},
        (),
    ),
    (
        # LB fault healed: internal came back 25 s ago, cloudflare 18 s ago after a last
        # failed attempt that began before internal was back. Its backoff is no evidence:
        # the hysteresis must not turn into blaming the CDN once internal has held.
        "a leg back from an outage is judged by its last failed attempt, not its return",
        [
            _obs(
                "cloudflare",
                "up",
                recent_drops=((NOW - 40, Reason.RTT_TIMEOUT),),
                up_since=NOW - 18,
                recovered_from=Reason.CONNECT_TIMEOUT,
                last_failure_at=NOW - 28,
            ),
            _obs(
                "internal",
                "up",
                recent_drops=((NOW - 40, Reason.RTT_TIMEOUT),),
                up_since=NOW - 25,
                recovered_from=Reason.RTT_TIMEOUT,
                last_failure_at=NOW - 30,
            ),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("traefik", "dispatch"),
        {"cloudflare": LegStatus.FAILING, "internal": LegStatus.HEALTHY},
        (),
    ),
    (
        # A dispatch restart closes both WebSocket legs at once; internal reconnects
        # first. Once it has held for the window, it still must not clear the shared
        # segments for cloudflare, which was dropped by the same restart.
        "two legs dropped together: the one back first is a witness, not an alibi",
        [
            _obs(
                "cloudflare",
                "up",
                recent_drops=((NOW - 26, Reason.CLOSED_BY_PEER),),
                up_since=NOW - 19,
                recovered_from=Reason.CLOSED_BY_PEER,
                last_failure_at=NOW - 26.5,
            ),
            _obs(
                "internal",
                "up",
                recent_drops=((NOW - 26, Reason.CLOSED_BY_PEER),),
                up_since=NOW - 25.8,
                recovered_from=Reason.CLOSED_BY_PEER,
                last_failure_at=NOW - 26.4,
            ),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("traefik", "dispatch"),
        {"cloudflare": LegStatus.FAILING, "internal": LegStatus.HEALTHY},
        (),
    ),
    (
        "a failure older than a neighbour's recovery is rechecking, not evidence",
        [
            _obs("cloudflare", "down", Reason.RESET, last_failure_at=NOW - 26),
            _obs("internal", "up", up_since=NOW - 25, recovered_from=Reason.RESET),
            _obs("t3serve", "up"),
        ],
        "unknown",
        (),
        {"cloudflare": LegStatus.RECHECKING},
        (),
    ),
    (
        "a failure after the neighbour's recovery convicts its own segments",
        [
            _obs(
                "cloudflare",
                "down",
                Reason.RESET,
                recent_drops=((NOW - 60, Reason.RESET),),
                last_failure_at=NOW - 1,
            ),
            _obs(
                "internal",
                "up",
                recent_drops=((NOW - 60, Reason.RESET),),
                up_since=NOW - 25,
                recovered_from=Reason.RESET,
            ),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
        {"cloudflare": LegStatus.FAILING},
        (),
    ),
    (
        # LB blackhole onset: cloudflare's watchdog ran out first; internal's last echo
        # is older than that drop, so it cannot clear traefik/dispatch yet.
        "a fresh drop a neighbour has not answered since is rechecking",
        [
            _FRESH_DROP,
            _obs("internal", "up", up_since=NOW - 100, last_success_at=NOW - 1.5),
            _obs("t3serve", "up"),
        ],
        "unknown",
        (),
        {"cloudflare": LegStatus.RECHECKING},
        (),
    ),
    (
        "the neighbour's next echo clears the shared segments: the CDN is convicted",
        [
            _FRESH_DROP,
            _obs("internal", "up", up_since=NOW - 100, last_success_at=NOW - 0.1),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
        {"cloudflare": LegStatus.FAILING},
        (),
    ),
    (
        "a flapping leg convicts while momentarily up and clears nothing",
        [_obs("cloudflare", "up", **_FLAP), _obs("internal", "up", **_FLAP), _obs("t3serve", "up")],
        "suspect",
        ("traefik", "dispatch"),
        {"internal": LegStatus.FLAPPING, "cloudflare": LegStatus.FLAPPING},
        (),
    ),
    (
        # An intermittent LB fault ending: cloudflare's flap memory faded first. It has
        # worked only since NOW - 44, while internal's flapping goes back to NOW - 50.
        "a leg whose flap memory faded first clears nothing for a leg still flapping",
        [
            _obs(
                "cloudflare",
                "up",
                recent_drops=((NOW - 70, Reason.RESET), (NOW - 45, Reason.RESET)),
                up_since=NOW - 44,
                recovered_from=Reason.RESET,
            ),
            _obs("internal", "up", **_FLAP),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("traefik", "dispatch"),
        {"cloudflare": LegStatus.HEALTHY, "internal": LegStatus.FLAPPING},
        (),
    ),
    (
        "a leg that worked through a neighbour's whole flapping clears the shared segments",
        [_obs("cloudflare", "up", **_FLAP), _obs("internal", "up"), _obs("t3serve", "up")],
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
        {"cloudflare": LegStatus.FLAPPING, "internal": LegStatus.HEALTHY},
        (),
    ),
    (
        "edge latency: cloudflare slow, internal fast → the CDN segments are degraded",
        [_obs("cloudflare", "up", degraded=True), _obs("internal", "up"), _obs("t3serve", "up")],
        "degraded",
        ("wan", "cf_edge", "cf_tunnel"),
        {"cloudflare": LegStatus.DEGRADED},
        (),
    ),
    (
        "a slow backend process degrades t3serve",
        [_obs("cloudflare", "up"), _obs("internal", "up"), _obs("t3serve", "up", degraded=True)],
        "degraded",
        ("t3serve",),
        {"t3serve": LegStatus.DEGRADED},
        (),
    ),
    (
        "both WebSocket legs slow → the LB or dispatch is degraded",
        [
            _obs("cloudflare", "up", degraded=True),
            _obs("internal", "up", degraded=True),
            _obs("t3serve", "up"),
        ],
        "degraded",
        ("traefik", "dispatch"),
        {"internal": LegStatus.DEGRADED},
        (),
    ),
    (
        # Loss on the LB: internal dropped, cloudflare rides it out slowly. Up but slow
        # is no alibi for the segments it shares.
        "a slow leg clears nothing for a failing one",
        [
            _obs("cloudflare", "up", degraded=True),
            _obs("internal", "down", Reason.RTT_TIMEOUT, last_failure_at=NOW - 1),
            _obs("t3serve", "up"),
        ],
        "suspect",
        ("traefik", "dispatch"),
        {"cloudflare": LegStatus.DEGRADED, "internal": LegStatus.FAILING},
        (),
    ),
    (
        # Loss on the LB costs one leg's echoes a retransmission now, the other's a
        # moment ago: the one fast right now is no alibi for the shared segments.
        "a leg slow within the window is no fast alibi for a neighbour slow now",
        [
            _obs("cloudflare", "up", slow_at=NOW - 2),
            _obs("internal", "up", degraded=True, slow_at=NOW),
            _obs("t3serve", "up"),
        ],
        "degraded",
        ("traefik", "dispatch"),
        {"cloudflare": LegStatus.DEGRADED},
        (),
    ),
    (
        "slowness that fast legs contradict everywhere is inconclusive",
        [_obs("cloudflare", "up"), _obs("internal", "up", degraded=True), _obs("t3serve", "up")],
        "inconclusive",
        (),
        {"internal": LegStatus.DEGRADED},
        ("internal",),
    ),
    (
        "one drop past the window is not flapping",
        [
            _obs("cloudflare", "up", recent_drops=((NOW - 30, Reason.RESET),), up_since=NOW - 25),
            _obs("internal", "up"),
            _obs("t3serve", "up"),
        ],
        "infra_clean",
        (),
        {"cloudflare": LegStatus.HEALTHY},
        (),
    ),
    (
        # One RST into internal while cloudflare, crossing the same LB, stayed up.
        "a partial fault nobody can explain is inconclusive, never an empty suspicion",
        [
            _obs("cloudflare", "up"),
            _obs("internal", "up", recent_drops=((NOW - 5, Reason.RESET),), up_since=NOW - 4),
            _obs("t3serve", "up"),
        ],
        "inconclusive",
        (),
        {"internal": LegStatus.FAILING},
        ("internal",),
    ),
    (
        "no network on the probe itself is probe_unhealthy",
        [_obs(name, "down", Reason.PROBE_NETWORK, last_failure_at=NOW) for name in SEGMENTS],
        "probe_unhealthy",
        (),
        {},
        (),
    ),
    (
        # With no route, a DoH leg cannot reach its resolver either: dns_failed beside
        # the legs that fail on the probe's own network.
        "no network with a leg that resolves first is still probe_unhealthy",
        [
            _obs("cloudflare", "down", Reason.DNS_FAILED, last_failure_at=NOW),
            _obs("internal", "down", Reason.PROBE_NETWORK, last_failure_at=NOW),
            _obs("t3serve", "down", Reason.PROBE_NETWORK, last_failure_at=NOW),
        ],
        "probe_unhealthy",
        (),
        {},
        (),
    ),
    (
        "the probe's own network error on one leg convicts nothing",
        [
            _obs("cloudflare", "down", Reason.PROBE_NETWORK, last_failure_at=NOW),
            _obs("internal", "up"),
            _obs("t3serve", "up"),
        ],
        "unknown",
        (),
        {"cloudflare": LegStatus.UNMEASURED},
        (),
    ),
    (
        "a DNS outage alone is no probe outage",
        [
            _obs("cloudflare", "down", Reason.DNS_FAILED, last_failure_at=NOW),
            _obs("internal", "down", Reason.DNS_FAILED, last_failure_at=NOW),
            _obs("t3serve", "down", Reason.DNS_FAILED, last_failure_at=NOW),
        ],
        "unknown",
        (),
        {"cloudflare": LegStatus.UNMEASURED},
        (),
    ),
    (
        # The probe froze 10 s ago and recovered (echoes flow again); a real fault on
        # the CDN now is convicted at once, not hidden for the rest of the window.
        "a stall that ended before echoes resumed exonerates no later fault",
        _stalled_then("down", reason=Reason.RESET, up_since=None, last_failure_at=NOW - 1),
        "suspect",
        ("wan", "cf_edge", "cf_tunnel"),
        {"cloudflare": LegStatus.FAILING, "internal": LegStatus.HEALTHY},
        (),
    ),
    (
        "a leg that has not answered since the stall is still the probe's",
        _stalled_then("up", up_since=NOW - 11, last_success_at=NOW - 11),
        "probe_unhealthy",
        (),
        {"cloudflare": LegStatus.STALLED, "internal": LegStatus.HEALTHY},
        (),
    ),
]


@pytest.mark.parametrize(
    ("legs", "verdict", "suspects", "statuses", "unexplained"),
    [row[1:] for row in TIMED_TABLE],
    ids=[row[0] for row in TIMED_TABLE],
)
def test_timed_attribution_table(
    legs: list[LegObservation],
    verdict: str,
    suspects: tuple[str, ...],
    statuses: dict[str, LegStatus],
    unexplained: tuple[str, ...],
) -> None:
    result = _verdict(*legs)
    assert (result.verdict, result.suspects, result.unexplained) == (
        verdict,
        suspects,
        unexplained,
    )
    assert {name: result.leg_status[name] for name in statuses} == statuses


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


def test_a_fault_and_a_slowdown_elsewhere_are_both_reported() -> None:
    legs = [
        _obs("cloudflare", "up", degraded=True),
        _obs("internal", "up"),
        _obs("t3serve", "down", Reason.RTT_TIMEOUT, last_failure_at=NOW - 1),
    ]
    result = _verdict(*legs)
    assert (result.verdict, result.suspects) == ("suspect", ("t3serve",))
    assert result.degraded == ("wan", "cf_edge", "cf_tunnel")


def _partial(name: str, up: int, failed: int, of: int = 4) -> LegObservation:
    return LegObservation(
        name,
        SEGMENTS[name],
        "down",
        Reason.RESET,
        ((NOW - 1, Reason.RESET),),
        last_failure_at=NOW - 1,
        connections=of,
        connections_up=up,
        failed_connections=failed,
    )


def test_half_the_lbs_connections_reset_convict_it_with_a_blast_radius_of_one_half() -> None:
    legs = [
        _partial("cloudflare", up=2, failed=2),
        _partial("internal", up=2, failed=2),
        LegObservation("t3serve", SEGMENTS["t3serve"], "up"),
    ]
    verdict = compute_verdict(legs, NOW, WINDOW)
    assert verdict.verdict == "suspect"
    assert verdict.suspects == ("traefik", "dispatch")
    assert verdict.blast_radius == {"traefik": 0.5, "dispatch": 0.5}


def test_a_leg_wholly_down_is_a_blast_radius_of_one() -> None:
    verdict = compute_verdict(_legs(cloudflare=Reason.RESET), NOW, WINDOW)
    assert verdict.blast_radius == {"wan": 1.0, "cf_edge": 1.0, "cf_tunnel": 1.0}


def test_the_blast_radius_counts_every_connection_crossing_the_segment() -> None:
    # One of cloudflare's four fails; internal's four all work: 1 of 8 through traefik,
    # and cloudflare's own segments carry only its four.
    legs = [
        _partial("cloudflare", up=3, failed=1),
        LegObservation("internal", SEGMENTS["internal"], "up", connections=4),
        LegObservation("t3serve", SEGMENTS["t3serve"], "up"),
    ]
    verdict = compute_verdict(legs, NOW, WINDOW)
    assert verdict.suspects == ("wan", "cf_edge", "cf_tunnel")
    assert verdict.blast_radius == {"wan": 0.25, "cf_edge": 0.25, "cf_tunnel": 0.25}


def test_a_leg_partly_down_on_its_own_network_leaves_the_probe_healthy() -> None:
    # Every leg down with probe_network is the probe offline, but a leg with connections
    # still up shows the probe has a network: those legs are unmeasured, not the probe.
    legs = [
        LegObservation(name, segments, "down", Reason.PROBE_NETWORK)
        for name, segments in SEGMENTS.items()
        if name != "internal"
    ]
    partly = LegObservation(
        "internal",
        SEGMENTS["internal"],
        "down",
        Reason.PROBE_NETWORK,
        connections=4,
        connections_up=3,
    )
    assert compute_verdict([*legs, partly], NOW, WINDOW).verdict == "unknown"
    assert compute_verdict(legs, NOW, WINDOW).verdict == "probe_unhealthy"


def test_the_blast_radius_counts_only_connections_that_measured_the_segment() -> None:
    # Half of internal's connections through the LB reset; cloudflare, across the LB too,
    # cannot resolve its name (a local reason: none of its connections reached the LB)
    # and of lb_http's two connections one has not reported yet. Of the connections that
    # crossed the LB (4 of internal, 1 of lb_http) two failed.
    legs = [
        _partial("internal", up=2, failed=2),
        LegObservation(
            "cloudflare",
            SEGMENTS["cloudflare"],
            "down",
            Reason.DNS_FAILED,
            ((NOW - 1, Reason.DNS_FAILED),),
            connections=4,
            connections_up=0,
            failed_connections=0,
            measured_connections=0,
        ),
        LegObservation(
            "lb_http",
            ("traefik", "dispatch"),
            "unknown",
            connections=2,
            connections_up=1,
            failed_connections=0,
            measured_connections=1,
        ),
        LegObservation("t3serve", SEGMENTS["t3serve"], "up"),
    ]
    verdict = compute_verdict(legs, NOW, WINDOW)
    assert verdict.suspects == ("traefik", "dispatch")
    assert verdict.blast_radius == {"traefik": 0.4, "dispatch": 0.4}


def _leg_status_before_the_fast_path(leg: LegObservation, now: float, policy: Policy) -> LegStatus:
    # leg_status as it was before its fast path (6d4441e^): the oracle it must agree with.
    recent = [reason for at, reason in leg.recent_drops if now - at <= policy.window]
    if attribution._stalled(leg, now, policy):
        return LegStatus.STALLED
    if leg.state == "down" and attribution._is_path(leg.reason):
        return LegStatus.FAILING
    if any(attribution._is_path(reason) for reason in recent):
        return LegStatus.FAILING
    if (
        leg.state == "up"
        and attribution._is_path(leg.recovered_from)
        and leg.up_since is not None
        and now - leg.up_since <= policy.window
    ):
        return LegStatus.FAILING
    if policy.flap_window > 0:
        flaps = [
            at
            for at, reason in leg.recent_drops
            if now - at <= policy.flap_window and attribution._is_path(reason)
        ]
        if len(flaps) >= policy.flap_drops and leg.state != "unknown":
            return LegStatus.FLAPPING
    if leg.state == "down":
        return LegStatus.UNMEASURED
    if leg.state == "unknown":
        return LegStatus.UNKNOWN
    recently_slow = leg.slow_at is not None and now - leg.slow_at <= policy.window
    return LegStatus.DEGRADED if leg.degraded or recently_slow else LegStatus.HEALTHY


def test_leg_status_with_its_fast_path_is_the_status_it_was_without() -> None:
    rng = random.Random(18)
    reasons = [Reason.RESET, Reason.PROBE_STALL, Reason.DNS_FAILED, Reason.RTT_TIMEOUT]
    states: list[LinkState] = ["up", "up", "down", "unknown"]
    now = 1000.0

    def at() -> float | None:
        return rng.choice((None, now - 100.0, now - 20.0, now - 5.0, now))

    checked = 0
    for _ in range(20_000):
        state = rng.choice(states)
        drops = tuple(
            (now - rng.choice((0.0, 5.0, 20.0, 50.0, 100.0)), rng.choice(reasons))
            for _ in range(rng.choice((0, 0, 1, 3)))
        )
        leg = LegObservation(
            "ws",
            ("lb",),
            state,
            rng.choice((None, *reasons)),
            tuple(sorted(drops, key=lambda drop: drop[0])),
            up_since=at(),
            recovered_from=rng.choice((None, None, *reasons)),
            last_failure_at=at(),
            last_success_at=at(),
            degraded=rng.random() < 0.3,
            slow_at=at(),
        )
        policy = Policy(
            window=rng.choice((5.0, 20.0)),
            flap_window=rng.choice((0.0, 20.0, 60.0)),
            flap_drops=rng.choice((1, 2, 3)),
        )
        status = leg_status(leg, now, policy)
        assert status == _leg_status_before_the_fast_path(leg, now, policy), (leg, policy)
        checked += status is LegStatus.HEALTHY
    assert checked > 1000  # the fast path's own case came up, not only the others


def test_a_policy_needs_at_least_one_drop_to_flap() -> None:
    with pytest.raises(ValueError, match="flap_drops must be at least 1, got 0"):
        Policy(window=20.0, flap_window=60.0, flap_drops=0)
