"""uvloop when installed (t3probe[fast]), asyncio's loop otherwise or when asked; the
loop in use is on /metrics."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from t3probe.daemon import Probe
from t3probe.eventloop import choose, running_loop_name
from tests.support.harness import free_port, leg, probe_config

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_when_asked_even_with_uvloop_installed() -> None:
    assert choose({"T3PROBE_EVENT_LOOP": "asyncio"}) == ("asyncio", None)


def test_auto_takes_uvloop_exactly_when_it_is_installed() -> None:
    name, factory = choose({})
    assert name == ("uvloop" if HAVE_UVLOOP else "asyncio")
    assert (factory is not None) is HAVE_UVLOOP


def test_insisting_on_uvloop_without_it_names_the_extra() -> None:
    if HAVE_UVLOOP:
        assert choose({"T3PROBE_EVENT_LOOP": "uvloop"})[0] == "uvloop"
    else:
        with pytest.raises(
            ValueError, match=r"uvloop is not installed \(install t3probe\[fast\]\)"
        ):
            choose({"T3PROBE_EVENT_LOOP": "uvloop"})


def test_a_bad_value_is_refused_naming_the_variable_and_choices() -> None:
    with pytest.raises(ValueError, match="T3PROBE_EVENT_LOOP='libuv' is not one of auto"):
        choose({"T3PROBE_EVENT_LOOP": "libuv"})


def test_run_refuses_a_bad_event_loop_before_starting(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "t3probe", "run"],
        env={"T3PROBE_EVENT_LOOP": "libuv", "T3PROBE_LOOPBACK_ONLY": "1", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "T3PROBE_EVENT_LOOP='libuv'" in result.stderr


async def test_the_loop_in_use_is_exposed() -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")])
    probe = Probe(config, registry=CollectorRegistry(), emit_line=lambda _: None)
    await probe.start()
    try:
        assert running_loop_name() == "asyncio"  # pytest-asyncio runs asyncio's loop
        assert probe.registry.get_sample_value("t3probe_event_loop_info", {"loop": "asyncio"}) == 1
    finally:
        await probe.stop()
