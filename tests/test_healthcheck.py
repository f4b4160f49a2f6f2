"""`t3probe healthcheck`: the image's HEALTHCHECK, following the configured `listen` port."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from t3probe.cli import HEALTHCHECK_DEFAULT_LISTEN
from t3probe.config import ProbeConfig
from tests.support.harness import Peer, free_port, leg, probe_config, running_probe


async def _healthcheck(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the subcommand as the container runtime does: a separate process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "t3probe",
        "healthcheck",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


def _config(tmp_path: Path, listen: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f'listen: "{listen}"\nlegs: []\n', encoding="utf-8")
    return path


@pytest.fixture
async def unhealthy_port() -> AsyncIterator[int]:
    """A server whose /healthz answers 503, as a probe with a lagging loop does."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=503, text="event loop lagging\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    yield port
    await runner.cleanup()


def test_default_listen_is_the_configs_default() -> None:
    assert ProbeConfig.model_fields["listen"].default == HEALTHCHECK_DEFAULT_LISTEN


async def test_healthy_probe_on_the_configured_port_via_loopback(
    peer: Peer, tmp_path: Path
) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        # The wildcard the image's config binds is reached on loopback.
        path = _config(tmp_path, f"0.0.0.0:{probe.probe.port}")
        code, stderr = await _healthcheck("--config", str(path))
        assert code == 0, stderr


async def test_environment_overrides_the_files_listen(peer: Peer, tmp_path: Path) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        path = _config(tmp_path, f"127.0.0.1:{free_port()}")
        code, stderr = await _healthcheck(
            "--config", str(path), env={"T3PROBE_LISTEN": f"127.0.0.1:{probe.probe.port}"}
        )
        assert code == 0, stderr


async def test_unhealthy_answer_fails(unhealthy_port: int, tmp_path: Path) -> None:
    code, stderr = await _healthcheck(
        "--config", str(_config(tmp_path, f"0.0.0.0:{unhealthy_port}"))
    )
    assert code == 1
    assert "503" in stderr


async def test_nothing_listening_fails_naming_the_address(tmp_path: Path) -> None:
    port = free_port()
    code, stderr = await _healthcheck("--config", str(_config(tmp_path, f"127.0.0.1:{port}")))
    assert code == 1
    assert f"127.0.0.1:{port}/healthz" in stderr


async def test_bad_listen_and_unreadable_file_fail_naming_them(tmp_path: Path) -> None:
    code, stderr = await _healthcheck("--config", str(_config(tmp_path, "nowhere")))
    assert (code, "listen" in stderr, "'nowhere'" in stderr) == (1, True, True)
    missing = tmp_path / "absent.yaml"
    code, stderr = await _healthcheck("--config", str(missing))
    assert (code, str(missing) in stderr) == (1, True)


async def test_a_config_broken_elsewhere_still_checks_the_port(peer: Peer, tmp_path: Path) -> None:
    # A reload rejected this file and the old config still runs: only `listen` counts.
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        path = tmp_path / "config.yaml"
        path.write_text(f'listen: "127.0.0.1:{probe.probe.port}"\nlegs: 7\nbogus: 1\n', "utf-8")
        code, stderr = await _healthcheck("--config", str(path))
        assert code == 0, stderr


async def test_help_names_the_port_source() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t3probe", "healthcheck", "--help",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    assert "usage: t3probe healthcheck" in stdout.decode()
    assert "T3PROBE_LISTEN" in stdout.decode()
