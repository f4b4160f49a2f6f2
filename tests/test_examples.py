"""The shipped examples: the loopback one run the way its header says, the wall-off guard
against a loopback service that is first walled, then opened."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from t3probe.attribution import LegObservation, compute_verdict
from t3probe.config_file import load_config
from t3probe.reasons import Reason
from tests.support.artifacts import RULES, alert_rules
from tests.support.env import TIME_UNIT
from tests.support.harness import eventually, free_port, probe_config, running_probe
from tests.support.prom import running_prometheus

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "loopback.yaml"


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode


async def test_loopback_example_brings_every_leg_up(tmp_path: Path) -> None:
    echo_port, probe_port = free_port(), free_port()
    config = tmp_path / "loopback.yaml"
    config.write_text(EXAMPLE.read_text().replace("8765", str(echo_port)))
    env = {**os.environ, "T3PROBE_LOOPBACK_ONLY": "1", "T3PROBE_LISTEN": f"127.0.0.1:{probe_port}"}
    echo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "echo", "--listen", f"127.0.0.1:{echo_port}",
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        wanted = {f't3probe_connected{{leg="{leg}"}} 1.0' for leg in ("direct", "pinned", "health")}
        async with asyncio.timeout(20 * TIME_UNIT), aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(0.3)
                try:
                    async with session.get(f"http://127.0.0.1:{probe_port}/metrics") as response:
                        metrics = await response.text()
                except aiohttp.ClientConnectionError:
                    continue
                if wanted <= set(metrics.splitlines()):
                    break
    finally:
        assert await _stop(probe) == 0
        assert await _stop(echo) == 0


WALL_EXAMPLE = EXAMPLE.parent / "wall-guard.yaml"


class _Wall:
    """A service whose protected path answers 401 until ``opened`` is set."""

    def __init__(self) -> None:
        self.opened = False
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _protected(self, request: web.Request) -> web.Response:
        if self.opened:
            return web.Response(text="private data\n")
        return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})

    async def start(self, path: str) -> None:
        app = web.Application()
        app.router.add_get(path, self._protected)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _wall_leg_on_loopback(port: int) -> dict[str, Any]:
    """The example's wall leg as shipped, its URL moved to a loopback port (plain HTTP)."""
    config = load_config(WALL_EXAMPLE, {})
    (wall,) = [leg for leg in config.legs if leg.role == "wall"]
    data = wall.model_dump(mode="json", exclude={"resolver", "ca_file"})
    data["url"] = f"http://127.0.0.1:{port}{urlsplit(wall.url).path}"
    return data


@contextlib.asynccontextmanager
async def _walled_service() -> AsyncIterator[_Wall]:
    wall = _Wall()
    await wall.start(urlsplit(_wall_leg_on_loopback(0)["url"]).path)
    try:
        yield wall
    finally:
        await wall.stop()


def test_wall_example_guards_a_protected_path_beside_the_carve_out() -> None:
    config = load_config(WALL_EXAMPLE, {})
    (wall,) = [leg for leg in config.legs if leg.role == "wall"]
    carve_outs = [leg for leg in config.legs if urlsplit(leg.url).path.startswith("/probe/")]
    assert carve_outs, "the example shows the wall next to a /probe/* leg"
    assert wall.kind == "http" and wall.expected_status
    assert all(status in (401, 403) or 300 <= status < 400 for status in wall.expected_status)
    assert not urlsplit(wall.url).path.startswith("/probe/")
    assert {(urlsplit(leg.url).hostname, leg.resolver) for leg in carve_outs} == {
        (urlsplit(wall.url).hostname, wall.resolver)
    }, "the same host over the same route as the carve-out"
    # An open wall convicts nothing: the carve-out's leg clears the shared route.
    legs = [
        LegObservation(leg.name, tuple(leg.segments), "up")
        if leg is not wall
        else LegObservation(leg.name, tuple(leg.segments), "down", Reason.HTTP_ERROR)
        for leg in config.legs
    ]
    verdict = compute_verdict(legs, now=0.0, policy=config.attribution_window_seconds)
    assert (verdict.verdict, verdict.suspects, verdict.unexplained) == (
        "inconclusive",
        (),
        (wall.name,),
    )


async def test_wall_guard_goes_down_with_http_error_when_the_wall_opens() -> None:
    async with _walled_service() as wall:
        config = probe_config([_wall_leg_on_loopback(wall.port)])
        name = config.legs[0].name
        async with running_probe(config) as probe:
            await probe.wait_for(name, "up")
            info = {"leg": name, "kind": "http", "resolver": "system", "role": "wall"}
            assert probe.metric("t3probe_leg_info", **info) == 1
            assert probe.metric("t3probe_connected", leg=name) == 1
            wall.opened = True
            down = await probe.wait_for(name, "down")
            assert down.reason is Reason.HTTP_ERROR
            assert "status 200" in down.detail
            # What T3ProbeWallOpen reads: down, and failed reconnects answered http_error.
            failures = {"leg": name, "reason": "http_error"}
            await eventually(
                lambda: (probe.metric("t3probe_reconnect_failures_total", **failures) or 0) >= 2,
                5 * TIME_UNIT,
            )
            assert probe.metric("t3probe_connected", leg=name) == 0
            wall.opened = False
            await probe.wait_for(name, "up", after=len(probe.events))
            assert probe.metric("t3probe_connected", leg=name) == 1


@pytest.mark.e2e
async def test_wall_open_alert_expression_is_true_in_a_real_prometheus_once_the_wall_opens() -> (
    None
):
    expr = alert_rules()["T3ProbeWallOpen"]["expr"]
    async with _walled_service() as wall:
        config = probe_config([_wall_leg_on_loopback(wall.port)])
        name = config.legs[0].name
        async with running_probe(config) as probe:
            await probe.wait_for(name, "up")
            target = f"127.0.0.1:{probe.probe.port}"
            async with running_prometheus([target], rule_files=[RULES]) as prom:
                await prom.wait_for(f'count_over_time(t3probe_connected{{leg="{name}"}}[1m]) >= 3')
                assert await prom.query(expr) == [], "quiet while the wall holds"
                wall.opened = True
                (firing,) = await prom.wait_for(expr)
                assert firing["metric"]["leg"] == name
                assert firing["metric"]["reason"] == "http_error"
                # The rule itself goes pending (its `for` is minutes, not test time).
                await prom.wait_for('ALERTS{alertname="T3ProbeWallOpen", alertstate="pending"}')
