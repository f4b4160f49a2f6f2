"""Turning Prometheus' and a probe's answers into evidence. Pure, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from t3probe.attribute import eventsource, promql
from t3probe.attribute.http import base_url
from t3probe.attribute.model import BadInput, SourceError, Window
from t3probe.attribute.verdict import judge
from t3probe.reasons import Reason

START, END = 1000.0, 1060.0
WINDOW = Window(at=1045.0, start=START, end=END, requested_end=END)


# ------------------------------------------------------------------ Prometheus


def matrix(*series: tuple[dict[str, str], list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "resultType": "matrix",
        "result": [
            {"metric": labels, "values": [[at, str(value)] for at, value in samples]}
            for labels, samples in series
        ],
    }


def vector(*samples: tuple[dict[str, str], float | str]) -> dict[str, Any]:
    return {
        "resultType": "vector",
        "result": [{"metric": labels, "value": [END, str(value)]} for labels, value in samples],
    }


def every(
    step: float, value: float = 1.0, start: float = START + 0.5, end: float = END
) -> list[tuple[float, float]]:
    samples, at = [], start
    while at <= end:
        samples.append((at, value))
        at += step
    return samples


def answers(
    connected: dict[str, Any],
    drops: dict[str, Any] | None = None,
    drop_times: dict[str, Any] | None = None,
    suspects: dict[str, Any] | None = None,
    restarts: dict[str, Any] | None = None,
    rtt: dict[str, Any] | None = None,
    present_now: int | None = None,
) -> promql.PrometheusAnswers:
    empty_vector, empty_matrix = vector(), matrix()
    rtt_samples = promql.parse_vector(rtt or empty_vector)
    return promql.PrometheusAnswers(
        connected=promql.parse_matrix(connected),
        drops=promql.parse_vector(drops or empty_vector),
        drop_times=promql.parse_matrix(drop_times or empty_matrix),
        restarts=promql.parse_vector(restarts or empty_vector),
        rtt_before={},
        rtt_during={0.5: rtt_samples, 0.99: rtt_samples},
        suspects=promql.parse_vector(suspects or empty_vector),
        present_now=present_now,
    )


def leg(name: str, instance: str = "probe:9108") -> dict[str, str]:
    return {"job": "t3probe", "instance": instance, "leg": name}


def test_prometheus_fault_window() -> None:
    broken = [(at, 0.0 if 1030 <= at < 1040 else 1.0) for at, _ in every(5)]
    ev = promql.evidence(
        "http://prom:9090",
        WINDOW,
        answers(
            matrix((leg("cloudflare"), broken), (leg("internal"), every(5))),
            drops=vector(({**leg("cloudflare"), "reason": "reset"}, "1"),
                         ({**leg("cloudflare"), "reason": "connect_refused"}, "0.6")),
            # the gauge's values: 0 (never died), then the drop before the window, then ours
            drop_times=matrix((leg("cloudflare"), [(1001, 990.0), (1031, 1030.25)])),
            suspects=vector(({"instance": "probe:9108", "segment": "cf_tunnel"}, 1)),
            rtt=vector((leg("internal"), "0.02"), (leg("cloudflare"), "NaN")),
        ),
    )  # fmt: skip
    legs = {leg.name: leg for leg in ev.legs}
    cloudflare, internal = legs["cloudflare"], legs["internal"]
    assert cloudflare.connected_throughout is False and cloudflare.state == "down"
    # increase() across a restart extrapolates: 0.6 is still one drop
    assert cloudflare.drop_counts == ((Reason.CONNECT_REFUSED, 1), (Reason.RESET, 1))
    assert [drop.at for drop in cloudflare.drops] == [1030.25]
    assert cloudflare.rtt_during is None
    assert internal.connected_throughout is True and internal.state == "up"
    assert internal.rtt_during is not None and internal.rtt_during.p50 == 0.02
    assert ev.probe_suspects == ("cf_tunnel",)
    assert judge(ev).outcome == "infra_fault"


@pytest.mark.parametrize(
    ("samples", "connected", "state", "gaps"),
    [
        (every(5), True, "up", ()),
        (every(5, start=1012), None, "unknown", ((START, 1012.0),)),  # started late
        (every(5, end=1040), None, "unknown", ((1035.5, END),)),  # stopped being scraped
        (
            [s for s in every(5) if not 1020 < s[0] < 1040],  # a hole mid-window
            None,
            "unknown",
            ((1015.5, 1040.5),),
        ),
        ([*every(5, end=1030), *every(5, 0.0, start=1035.5)], False, "down", ()),
        ([], None, "unknown", ((START, END),)),
    ],
)
def test_prometheus_coverage(
    samples: list[tuple[float, float]],
    connected: bool | None,
    state: str,
    gaps: tuple[tuple[float, float], ...],
) -> None:
    # Another leg keeps the scrape interval known (5 s) even when this one is sparse.
    ev = promql.evidence(
        "u", WINDOW, answers(matrix((leg("a"), samples), (leg("other"), every(5))))
    )
    a = ev.legs[0]
    assert (a.connected_throughout, a.state, a.gaps) == (connected, state, gaps)


def test_prometheus_no_samples_is_no_data_with_a_hint() -> None:
    for present, hint in ((3, "none in the window"), (0, "no t3probe_connected series at all")):
        ev = promql.evidence("u", WINDOW, answers(matrix(), present_now=present))
        assert ev.legs == () and any(hint in note for note in ev.notes)
        assert judge(ev).outcome == "no_data"


def test_prometheus_several_probes_are_told_apart() -> None:
    ev = promql.evidence(
        "u",
        WINDOW,
        answers(
            matrix(
                (leg("cloudflare", "a:9108"), every(5)), (leg("cloudflare", "b:9108"), every(5))
            ),
            suspects=vector(({"instance": "b:9108", "segment": "wan"}, 1)),
            restarts=vector(({"instance": "b:9108"}, 1)),
        ),
    )
    assert [leg.name for leg in ev.legs] == ["cloudflare@a:9108", "cloudflare@b:9108"]
    assert ev.probe_suspects == ("wan@b:9108",)
    assert any("b:9108 restarted" in note for note in ev.notes)


def test_scrape_interval_and_durations() -> None:
    assert promql.scrape_interval(promql.parse_matrix(matrix((leg("a"), every(15))))) == 15
    assert promql.scrape_interval(promql.parse_matrix(matrix((leg("a"), [(1, 1.0)])))) is None
    assert promql.duration(60) == "60000ms" and promql.duration(1e-6) == "1ms"
    assert "[61500ms]" in promql.drops_query(WINDOW, 1.5)


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"resultType": "scalar", "result": [1, "1"]},
        {"resultType": "vector"},
        {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]},
        {"resultType": "vector", "result": [{"metric": [], "value": [1, "1"]}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": [1, "one"]}]},
    ],
)
def test_malformed_prometheus_answers_are_source_errors(data: Any) -> None:
    with pytest.raises(SourceError):
        promql.parse_vector(data)


# ------------------------------------------------------------------ /events + /verdict


def verdict(**legs: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": "infra_clean", "suspects": [], "at": END + 1, "legs": legs}


def current(state: str, since: float, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"up": state == "up", "state": state, "reason": reason, "since": since, **extra}


def event(
    leg: str, kind: str, at: float, reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"leg": leg, "kind": kind, "at": at, "reason": reason, "detail": "", **extra}


def test_events_replay_a_drop_inside_the_window() -> None:
    ev = eventsource.evidence(
        "http://probe:9108",
        WINDOW,
        verdict(
            cloudflare=current("up", 1042.0, segments=["wan", "cf_edge"]),
            internal=current("up", 100.0, segments=["cf_edge"]),
        ),
        {
            "events": [
                event("cloudflare", "up", 100.0),
                event("cloudflare", "down", 1041.123, "closed_by_peer", close_code=1001,
                      age_seconds=941.1, last_rtt_seconds=0.012),
                event("cloudflare", "up", 1042.0),
                {"kind": "verdict", "at": 1041.2},  # not a leg event
            ]
        },
        END,
    )  # fmt: skip
    cloudflare, internal = ev.legs
    assert cloudflare.connected_throughout is False and cloudflare.state == "up"
    (drop,) = cloudflare.drops
    assert (drop.at, drop.reason, drop.close_code, drop.age_seconds) == (
        1041.123,
        Reason.CLOSED_BY_PEER,
        1001,
        941.1,
    )
    assert internal.connected_throughout is True and internal.state == "up"
    finding = judge(ev)
    assert (finding.outcome, finding.suspects) == ("infra_fault", ("wan",))


@pytest.mark.parametrize(
    ("leg_now", "leg_events", "connected", "state", "reason"),
    [
        # unchanged since before the window: the current state held throughout
        (current("down", 900.0, "connect_refused"), [], False, "down", Reason.CONNECT_REFUSED),
        (current("up", 900.0), [], True, "up", None),
        # changed after the window; the event before it tells the state at its start
        (current("down", 2000.0, "reset"), [event("a", "up", 990.0)], True, "up", None),
        # the ring buffer does not reach back (probe not running, or buffer moved on)
        (current("up", 2000.0), [], None, "unknown", None),
        # started inside the window: up, but the start of the window is unobserved
        (current("up", 1030.0), [event("a", "up", 1030.0)], None, "unknown", None),
        # a reason from a newer probe is still a drop
        (current("down", 1010.0, "martian"), [event("a", "up", 990.0),
         event("a", "down", 1010.0, "martian")], False, "down", Reason.INTERNAL_ERROR),
    ],
)  # fmt: skip
def test_events_state_through_the_window(
    leg_now: dict[str, Any],
    leg_events: list[dict[str, Any]],
    connected: bool | None,
    state: str,
    reason: Reason | None,
) -> None:
    ev = eventsource.evidence("u", WINDOW, verdict(a=leg_now), {"events": leg_events}, END)
    (a,) = ev.legs
    assert (a.connected_throughout, a.state, a.reason) == (connected, state, reason)


def test_events_notes_say_what_the_source_cannot_give() -> None:
    ev = eventsource.evidence(
        "u", WINDOW, verdict(a=current("up", 900.0)), {"events": []}, END + 30
    )
    notes = " / ".join(ev.notes)
    assert "RTT percentiles are not in /events" in notes
    assert "does not list each leg's segments" in notes
    assert "clock is -29.0 s off ours" in notes


@pytest.mark.parametrize(
    ("verdict_doc", "events_doc"),
    [
        ({"legs": []}, {"events": []}),
        ({"verdict": "x"}, {"events": []}),
        (verdict(a=current("up", 900.0)), {"events": {}}),
        (verdict(a={"up": True, "since": "yesterday"}), {"events": []}),
        (verdict(a=current("up", 900.0)), {"events": [{**event("a", "down", 0.0), "at": "soon"}]}),
    ],
)
def test_malformed_probe_answers_are_source_errors(verdict_doc: Any, events_doc: Any) -> None:
    with pytest.raises(SourceError):
        eventsource.evidence("u", WINDOW, verdict_doc, events_doc, END)


@pytest.mark.parametrize(
    ("text", "suffixes", "expected"),
    [
        ("http://prometheus:9090", (), "http://prometheus:9090"),
        ("https://mon.example/prometheus/", (), "https://mon.example/prometheus"),
        ("http://t3probe:9108/events", ("/events", "/verdict"), "http://t3probe:9108"),
        ("http://t3probe:9108/", ("/events", "/verdict"), "http://t3probe:9108"),
    ],
)
def test_base_url(text: str, suffixes: tuple[str, ...], expected: str) -> None:
    assert base_url(text, "--x", suffixes) == expected


@pytest.mark.parametrize(
    "text", ["prometheus:9090", "ftp://h/", "http://", "http://h:notaport", "http://h/?q=1"]
)
def test_base_url_refuses(text: str) -> None:
    with pytest.raises(BadInput, match="--x URL"):
        base_url(text, "--x")
