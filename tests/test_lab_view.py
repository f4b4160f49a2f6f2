"""The lab's live view on a classic 80x24 terminal, from made-up and real probe states."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest

from t3probe.lab.view import (
    MAX_LINES,
    WIDTH,
    LegView,
    ViewState,
    event_text,
    render,
    short_detail,
    snapshot,
)
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, eventually, leg, probe_config, running_probe

CDN = ("wan", "cf_edge", "cf_tunnel", "traefik", "dispatch")
RAW_DETAIL = (
    "ClientConnectorError: Cannot connect to host lab.t3probe.test:41234 ssl:<ssl.SSLContext"
    " object at 0x7f3a2b1c9d50> [Connect call failed ('127.0.0.2', 41234)]\n  and more"
)


def _legs(cloudflare: LegView) -> tuple[LegView, ...]:
    return (
        cloudflare,
        LegView("internal", "up", "healthy", 312.0, 0.0021, None, ("traefik", "dispatch"), "-"),
        LegView("t3serve", "up", "healthy", 4000.0, 0.004, None, ("t3serve",), "-"),
    )


def _state(cloudflare: LegView, verdict: str = "suspect") -> ViewState:
    suspects = ["wan", "cf_edge", "cf_tunnel"] if verdict == "suspect" else []
    return ViewState(
        verdict={"verdict": verdict, "suspects": suspects, "unexplained": [], "unobserved": []},
        legs=_legs(cloudflare),
        window=3.0,
        flap_window=6.0,
        flap_drops=2,
    )


JUST_BACK = LegView(
    "cloudflare", "up", "failing", 1.0, 0.0031, None, CDN,
    "rtt_timeout:1 reset:3 closed_without_frame:2 connect_refused:4",
    last_drop_ago=2.4, back_for=1.0,
)  # fmt: skip
EVENTS = [
    event_text({"at": 1_800_000_000.0 + i, "leg": "cloudflare", "kind": "down",
                "reason": "connect_refused", "detail": RAW_DETAIL})
    for i in range(12)
]  # fmt: skip


def _screen(state: ViewState) -> list[str]:
    header = "t3probe lab · probe http://127.0.0.1:9108"
    help_line = "faults by hand: curl http://127.0.0.1:9109/lab  ·  Ctrl-C stops the lab"
    text = render(state, header, "edge=blackhole", EVENTS, help_line)
    return text.split("\n")


def test_the_view_fits_80x24_with_segments_and_the_verdict() -> None:
    lines = _screen(_state(JUST_BACK))
    assert len(lines) <= MAX_LINES < 24
    assert max(len(line) for line in lines) <= WIDTH
    text = "\n".join(lines)
    assert "wan > cf_edge > cf_tunnel > traefik > dispatch" in text
    assert "traefik > dispatch" in text and "healthy: t3serve" in text
    assert "verdict: suspect → wan, cf_edge, cf_tunnel" in text
    assert lines[-1].startswith("faults by hand:")
    assert any(line.startswith("  ") and "cloudflare down" in line for line in lines)


def test_suspect_while_every_leg_is_up_says_which_window_holds_it() -> None:
    text = "\n".join(_screen(_state(JUST_BACK)))
    assert "cloudflare dropped 2s ago; counts for the attribution window of 3s" in text
    back = dataclasses.replace(JUST_BACK, last_drop_ago=40.0, back_for=1.2)
    text = "\n".join(_screen(_state(back)))
    assert "cloudflare came back 1s ago, within the attribution window of 3s" in text
    flapping = dataclasses.replace(JUST_BACK, status="flapping", flap_drops=3, last_drop_ago=5.0)
    text = "\n".join(_screen(_state(flapping)))
    assert "cloudflare is flapping: 3 drops within the flap window of 6s" in text
    healthy = dataclasses.replace(JUST_BACK, status="healthy")
    assert "why:" not in "\n".join(_screen(_state(healthy, verdict="infra_clean")))


def test_many_legs_still_leave_the_verdict_on_screen() -> None:
    many = tuple(dataclasses.replace(JUST_BACK, name=f"leg{i}") for i in range(20))
    lines = _screen(dataclasses.replace(_state(JUST_BACK, verdict="infra_clean"), legs=many))
    assert len(lines) <= MAX_LINES
    assert any(line.startswith("verdict: infra_clean") for line in lines)
    assert any("more legs: see /verdict" in line for line in lines)


def test_a_partial_leg_shows_its_connections_and_the_verdict_its_blast_radius() -> None:
    partial = dataclasses.replace(
        JUST_BACK, state="partial", connections=4, connections_up=2, reason="reset"
    )
    state = dataclasses.replace(
        _state(partial),
        verdict={
            "verdict": "suspect",
            "suspects": ["traefik", "dispatch"],
            "blast_radius": {"traefik": 0.5, "dispatch": 0.5},
        },
    )
    lines = _screen(state)
    assert max(len(line) for line in lines) <= WIDTH
    text = "\n".join(lines)
    assert "cloudflare partial" in text and "(2/4 up)" in text
    assert "(blast radius: traefik 0.5, dispatch 0.5)" in text
    whole = dataclasses.replace(state, verdict={**state.verdict, "blast_radius": {"wan": 1.0}})
    assert "blast radius" not in "\n".join(_screen(whole))  # all of it: nothing to add


def test_events_of_several_connections_name_the_connection_and_bursts_their_share() -> None:
    down = {"at": 1_800_000_000.0, "leg": "internal", "kind": "down", "reason": "reset",
            "detail": "", "connection": 2}  # fmt: skip
    assert event_text(down, indexed=True).endswith("internal[2] down reset")
    assert event_text(down).endswith("internal down reset")
    burst = {**down, "kind": "burst", "connection": None, "dropped": 2, "of": 4}
    assert event_text(burst, indexed=True).endswith("internal burst: 2 of 4 connections")


def test_event_details_are_one_short_readable_line() -> None:
    short = short_detail(RAW_DETAIL)
    assert "\n" not in short and len(short) <= 48
    assert short.startswith("Cannot connect to host lab.t3probe.test:41234")
    assert "ClientConnectorError" not in short and "0x7f" not in short
    assert short_detail("no echo for 2s") == "no echo for 2s"
    seen_in_the_lab = (
        "ClientConnectorError: ECONNREFUSED: Cannot connect to host lab.t3probe.test:45467"
        " ssl:default [Connect call failed ('127.0.0.3', 45467)]"
    )
    assert short_detail(seen_in_the_lab, 80) == (
        "ECONNREFUSED: Cannot connect to host lab.t3probe.test:45467"
    )


async def test_snapshot_of_a_running_probe() -> None:
    peer = await Peer().start()
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await eventually(lambda: snapshot(probe.probe).legs[0].last_rtt is not None, 5 * TIME_UNIT)
        up = snapshot(probe.probe).legs[0]
        assert (up.state, up.segments, up.last_drop_ago) == ("up", ("ws_path",), None)
        await peer.stop()
        await probe.wait_for("ws", "down")
        down = snapshot(probe.probe).legs[0]
        assert down.state == "down" and down.last_rtt is None
        assert down.last_drop_ago is not None and down.last_drop_ago >= 0
        assert down.drops != "-"
        text = render(snapshot(probe.probe), "header", "none", [], "help")
        assert "ws_path" in text and "verdict: " in text


async def test_snapshot_of_a_leg_back_from_a_drop(peer: Peer) -> None:
    # The peer closes after each first echo: the leg keeps dropping and coming back.
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/close/4000")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up", after=1)

        def back() -> bool:
            seen = snapshot(probe.probe).legs[0]
            return seen.state == "up" and seen.back_for is not None and seen.flap_drops >= 1

        await eventually(back, 5 * TIME_UNIT)


def test_event_times_carry_their_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Berlin user pasting a time from the view into `attribute --at` names the instant."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        at = dt.datetime(2026, 1, 15, 13, 3, 5, 120_000, tzinfo=dt.UTC).timestamp()
        line = event_text({"at": at, "leg": "cloudflare", "kind": "up"})
        assert line == "14:03:05.120+01:00 cloudflare up"
    finally:
        monkeypatch.undo()
        time.tzset()
