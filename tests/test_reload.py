"""Reload without a blip: SIGHUP and POST /-/reload keep unchanged legs' connections."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from t3probe.config import ProbeConfig
from t3probe.config_file import load_config
from t3probe.daemon import Probe
from t3probe.reloadplan import (
    LEG_SETTINGS,
    LIVE_SETTINGS,
    RESTART_SETTINGS,
    ReloadRefused,
    plan_reload,
)
from tests.support.env import TIME_UNIT
from tests.support.harness import RunningProbe, eventually, free_port, leg, probe_config, serve_app

SETTLE_SECONDS = 0.6 * TIME_UNIT  # three heartbeats: long enough for a reconnect to show


class CountingEcho:
    """A WebSocket echo on 127.0.0.1 that counts connections and close codes per path."""

    def __init__(self) -> None:
        self.connections: collections.Counter[str] = collections.Counter()
        self.close_codes: dict[str, list[int]] = collections.defaultdict(list)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["name"]
        self.connections[path] += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        if ws.close_code is not None:
            self.close_codes[path].append(ws.close_code)
        return ws

    async def start(self) -> CountingEcho:
        app = web.Application()
        app.router.add_get("/ws/{name}", self._echo)
        self._runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{name}"


@pytest.fixture
async def counting_echo() -> AsyncIterator[CountingEcho]:
    server = await CountingEcho().start()
    yield server
    await server.stop()


def _config(legs: list[dict[str, Any]], **overrides: Any) -> ProbeConfig:
    return probe_config(legs, **overrides)


def _write(path: Path, config: ProbeConfig) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))


def _series_with(registry: CollectorRegistry, label: str, value: str) -> list[str]:
    return [
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get(label) == value
    ]


@contextlib.asynccontextmanager
async def _reloadable(path: Path) -> AsyncIterator[RunningProbe]:
    registry = CollectorRegistry()
    probe = Probe(
        load_config(path, environ={}),
        registry=registry,
        emit_line=lambda line: None,
        config_source=lambda: load_config(path, environ={}),
    )
    handle = RunningProbe(probe)
    await probe.start()
    try:
        yield handle
    finally:
        await probe.stop()


# --- the plan (pure) ---------------------------------------------------------------


def _plan_legs() -> list[dict[str, Any]]:
    return [leg("a", "ws://127.0.0.1:1/a"), leg("b", "ws://127.0.0.1:1/b")]


def test_every_setting_is_classified_for_reload() -> None:
    classified = LEG_SETTINGS | LIVE_SETTINGS | RESTART_SETTINGS | {"legs"}
    assert classified == set(ProbeConfig.model_fields)
    assert not (LEG_SETTINGS & LIVE_SETTINGS or LEG_SETTINGS & RESTART_SETTINGS)


def test_plan_keeps_unchanged_starts_added_stops_removed_restarts_changed() -> None:
    old = _config(_plan_legs())
    new = _config(
        [
            leg("a", "ws://127.0.0.1:1/a"),
            leg("b", "ws://127.0.0.1:1/b", segments=["other"]),
            leg("c", "ws://127.0.0.1:1/c"),
        ]
    )
    plan = plan_reload(old, new)
    assert plan.keep == ("a",)
    assert [leg.name for leg in plan.start] == ["c"]
    assert [leg.name for leg in plan.restart] == ["b"]
    assert plan.stop == ()
    assert plan_reload(new, old).stop == ("c",)


def test_a_setting_every_leg_reads_restarts_every_leg() -> None:
    old = _config(_plan_legs())
    plan = plan_reload(old, _config(_plan_legs(), heartbeat_seconds=0.3))
    assert plan.keep == ()
    assert [leg.name for leg in plan.restart] == ["a", "b"]


def test_attribution_settings_apply_without_touching_legs() -> None:
    old = _config(_plan_legs())
    plan = plan_reload(old, _config(_plan_legs(), attribution_window_seconds=7, flap_drops=5))
    assert plan.keep == ("a", "b")
    assert plan.retired == ()


def test_a_new_listen_address_is_refused() -> None:
    old = _config(_plan_legs())
    with pytest.raises(ReloadRefused, match="listen"):
        plan_reload(old, _config(_plan_legs(), listen="127.0.0.1:9999"))


# --- a running probe -----------------------------------------------------------------


async def test_reload_keeps_unchanged_legs_and_swaps_the_rest(
    counting_echo: CountingEcho, tmp_path: Path
) -> None:
    path = tmp_path / "probe.yaml"
    _write(
        path,
        _config(
            [
                leg("kept", counting_echo.url("kept")),
                leg("gone", counting_echo.url("gone"), segments=["gone_path", "shared"]),
                leg("changed", counting_echo.url("changed")),
            ]
        ),
    )
    async with _reloadable(path) as probe:
        for name in ("kept", "gone", "changed"):
            await probe.wait_for(name, "up")
        registry = probe.probe.registry
        before = probe.metric("t3probe_config_last_reload_success_timestamp_seconds")
        assert probe.metric("t3probe_config_last_reload_successful") == 1
        assert probe.metric("t3probe_segment_suspected", segment="gone_path") == 0
        events_before = len(probe.events)

        _write(
            path,
            _config(
                [
                    leg("kept", counting_echo.url("kept")),
                    leg(
                        "changed", counting_echo.url("changed"), segments=["changed_path", "shared"]
                    ),
                    leg("added", counting_echo.url("added")),
                ]
            ),
        )
        result = await probe.probe.reload()
        assert result.ok, result.message
        await probe.wait_for("added", "up", after=events_before)
        await probe.wait_for("changed", "up", after=events_before)
        await asyncio.sleep(SETTLE_SECONDS)

        # Untouched: one connection ever, never closed, no event since the reload.
        assert counting_echo.connections["kept"] == 1
        assert counting_echo.close_codes["kept"] == []
        assert [e for e in probe.events[events_before:] if e.leg == "kept"] == []
        # Removed: closed as going away, not dropped, and every series of it gone.
        await eventually(lambda: counting_echo.close_codes["gone"] == [1001], 2 * TIME_UNIT)
        assert [e for e in probe.events[events_before:] if e.leg == "gone"] == []
        assert _series_with(registry, "leg", "gone") == []
        assert probe.metric("t3probe_segment_suspected", segment="gone_path") is None
        # Changed: the old connection went away with 1001, a new one serves the new config.
        assert counting_echo.connections["changed"] == 2
        assert counting_echo.close_codes["changed"] == [1001]
        assert probe.metric("t3probe_segment_suspected", segment="changed_path") == 0
        assert probe.metric("t3probe_segment_suspected", segment="shared") == 0
        # Added: up, its series exported, and the verdict knows all three legs.
        assert probe.metric("t3probe_connected", leg="added") == 1
        assert probe.metric("t3probe_disconnects_total", leg="added", reason="reset") == 0
        verdict = probe.probe.recorder.verdict_json()
        assert sorted(verdict["legs"]) == ["added", "changed", "kept"]
        assert verdict["verdict"] == "infra_clean"
        after = probe.metric("t3probe_config_last_reload_success_timestamp_seconds")
        assert before is not None and after is not None and after >= before
        assert probe.metric("t3probe_config_last_reload_successful") == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("legs: [\n", "not valid YAML"),
        ("heartbeat_seconds: -1\nlegs: []\n", "heartbeat_seconds"),
        (None, "listen"),
    ],
    ids=["yaml", "invalid", "listen"],
)
async def test_a_bad_config_is_rejected_whole_and_the_old_one_keeps_running(
    counting_echo: CountingEcho, tmp_path: Path, text: str | None, error: str
) -> None:
    path = tmp_path / "probe.yaml"
    good = _config([leg("kept", counting_echo.url("kept"))])
    _write(path, good)
    async with _reloadable(path) as probe:
        await probe.wait_for("kept", "up")
        stamp = probe.metric("t3probe_config_last_reload_success_timestamp_seconds")
        if text is None:
            _write(path, _config([leg("kept", counting_echo.url("kept"))], listen="127.0.0.1:1"))
        else:
            path.write_text(text)
        result = await probe.probe.reload()
        assert not result.ok
        assert error in result.message
        assert probe.metric("t3probe_config_last_reload_successful") == 0
        assert probe.metric("t3probe_config_last_reload_success_timestamp_seconds") == stamp
        assert probe.probe.config == good
        await asyncio.sleep(SETTLE_SECONDS)
        assert counting_echo.connections["kept"] == 1
        assert probe.metric("t3probe_connected", leg="kept") == 1

        _write(path, good)
        assert (await probe.probe.reload()).ok
        assert probe.metric("t3probe_config_last_reload_successful") == 1
        assert counting_echo.connections["kept"] == 1


async def test_post_reload_answers_200_or_500_with_the_reason(
    counting_echo: CountingEcho, tmp_path: Path
) -> None:
    path = tmp_path / "probe.yaml"
    _write(path, _config([leg("kept", counting_echo.url("kept"))]))
    async with _reloadable(path) as probe, aiohttp.ClientSession() as client:
        await probe.wait_for("kept", "up")
        url = f"http://127.0.0.1:{probe.probe.port}/-/reload"
        async with client.post(url) as response:
            assert response.status == 200, await response.text()
            assert "kept kept" in await response.text()
        path.write_text("legs: 3\n")
        async with client.post(url) as response:
            assert response.status == 500
            assert "legs" in await response.text()
        async with client.get(url) as response:
            assert response.status == 405
    assert counting_echo.connections["kept"] == 1


async def test_sighup_reloads_the_daemon_instead_of_killing_it(
    counting_echo: CountingEcho, tmp_path: Path
) -> None:
    port = free_port()
    path = tmp_path / "probe.yaml"
    legs = [leg("kept", counting_echo.url("kept"))]
    _write(path, _config(legs, listen=f"127.0.0.1:{port}"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "t3probe",
        "run",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "T3PROBE_LOOPBACK_ONLY": "1"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10 * TIME_UNIT):
            first = json.loads(await process.stdout.readline())
        assert (first["leg"], first["kind"]) == ("kept", "up")
        _write(
            path,
            _config([*legs, leg("added", counting_echo.url("added"))], listen=f"127.0.0.1:{port}"),
        )
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(10 * TIME_UNIT):
            second = json.loads(await process.stdout.readline())
        assert (second["leg"], second["kind"]) == ("added", "up")
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            metrics = await response.text()
        assert "t3probe_config_last_reload_successful 1.0" in metrics
        assert 't3probe_connected{leg="added"} 1.0' in metrics
        assert process.returncode is None
        assert counting_echo.connections["kept"] == 1
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"config reloaded" in stderr
        assert counting_echo.close_codes["kept"] == [1001]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
