"""The periodic verdict refresh skips work only where the answer cannot have changed.

Whatever legs report and however time passes, the verdict the recorder holds after a
refresh is the one a full recomputation over every leg gives at that moment.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from t3probe.attribution import VerdictName, compute_verdict
from t3probe.config import build_config
from t3probe.metrics import ProbeMetrics
from t3probe.reasons import Classified, Reason
from t3probe.recorder import Recorder
from tests.support.fakes import FakeClock

LEGS = ("a", "b", "c")
REASONS = (Reason.RESET, Reason.CONNECT_TIMEOUT, Reason.PROBE_STALL, Reason.DNS_FAILED)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("up"), st.sampled_from(LEGS)),
        st.tuples(st.just("down"), st.sampled_from(LEGS), st.sampled_from(REASONS)),
        st.tuples(st.just("rtt"), st.sampled_from(LEGS)),
        st.tuples(st.just("wait"), st.floats(min_value=0.1, max_value=30.0)),
        st.tuples(st.just("refresh")),
    ),
    max_size=40,
)


def _recorder(clock: FakeClock) -> Recorder:
    config = build_config(
        {
            "listen": "127.0.0.1:0",
            "heartbeat_seconds": 1.0,
            "watchdog_seconds": 2.0,
            "attribution_window_seconds": 5.0,
            "legs": [
                {
                    "name": name,
                    "kind": "websocket",
                    "url": "ws://127.0.0.1:1/ws",
                    "segments": ["shared", f"own_{name}"],
                }
                for name in LEGS
            ],
        }
    )
    return Recorder(config, ProbeMetrics(CollectorRegistry(), config), clock, lambda _: None)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_a_refreshed_verdict_equals_a_full_recomputation(ops: list[tuple[object, ...]]) -> None:
    clock = FakeClock()
    recorder = _recorder(clock)
    for op in ops:
        if op[0] == "up":
            recorder.leg_up(str(op[1]))
        elif op[0] == "down":
            reason = op[2]
            assert isinstance(reason, Reason)
            recorder.leg_down(str(op[1]), Classified(reason, "test"), 1.0)
        elif op[0] == "rtt":
            recorder.observe_rtt(str(op[1]), 0.01)
        elif op[0] == "wait":
            clock.advance(float(op[1]))  # type: ignore[arg-type]
        held = recorder.refresh_verdict()
        full = compute_verdict(recorder.observations(), clock.monotonic(), recorder._policy)
        assert held == full


def test_a_reload_adding_a_leg_to_a_clean_probe_makes_it_unknown() -> None:
    clock = FakeClock()
    recorder = _recorder(clock)
    for name in LEGS:
        recorder.leg_up(name)
    assert recorder.refresh_verdict().verdict is VerdictName.INFRA_CLEAN
    config = build_config(
        {
            "listen": "127.0.0.1:0",
            "legs": [
                {"name": n, "kind": "websocket", "url": "ws://127.0.0.1:1/ws", "segments": ["s"]}
                for n in (*LEGS, "new")
            ],
        }
    )
    new_leg = next(leg for leg in config.legs if leg.name == "new")
    recorder.reconfigure(config, (), (new_leg,))
    assert recorder.refresh_verdict().verdict is VerdictName.UNKNOWN
