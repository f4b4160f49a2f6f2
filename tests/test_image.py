"""The Dockerfile, built with podman and run as production runs it.

Built with ``--pull=never`` on a Debian-made stand-in for the official base (see
tests/support/container.py), then run read-only as UID 65532 with no capabilities, no
privilege escalation and no network. Needs root and podman, runc, mmdebstrap (bootstrap
--system installs them); without them it skips loudly, and under CI=true fails.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.artifacts import PROBE_UID, ROOT
from tests.support.container import Podman

# Cold, the base image is made from Debian packages first (about 90 s on a 2-core host).
pytestmark = pytest.mark.timeout(1500)

# Not the default 9108: the HEALTHCHECK must follow the configured port.
PORT = 18123
ECHO = "127.0.0.1:8765"
CONFIG_IN_IMAGE = "/etc/t3probe/config.yaml"
PRODUCTION_FLAGS = (
    "--read-only",
    f"--user={PROBE_UID}",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=none",
)
READY_WITHIN = 30.0
# Fetches a URL from inside the container (the network is "none": only its loopback).
FETCH = (
    "import sys, urllib.request as r\n"
    "try:\n"
    "    a = r.urlopen(sys.argv[1], timeout=5)\n"
    "except OSError as e:\n"
    "    sys.exit(str(e))\n"
    "print(a.status); print(a.read().decode())\n"
)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(podman: Podman) -> Iterator[str]:
    image_id = podman.build(ROOT, podman.ensure_base())
    try:
        yield image_id
    finally:
        podman.run("rmi", "--force", image_id, check=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    settings = {
        "listen": f"0.0.0.0:{PORT}",
        "heartbeat_seconds": 1,
        "watchdog_seconds": 3,
        "attribution_window_seconds": 3,
        "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 0.5,
        "legs": [
            {
                "name": "echo",
                "kind": "websocket",
                "url": f"ws://{ECHO}/probe/ws",
                "segments": ["echo"],
            }
        ],
    }
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    path.chmod(0o644)
    return path


@pytest.fixture
def container_name(podman: Podman) -> Iterator[str]:
    name = f"t3probe-test-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        podman.run("rm", "--force", "--time=0", name, check=False)


def _mount(config: Path) -> str:
    return f"--volume={config}:{CONFIG_IN_IMAGE}:ro"


def test_image_metadata(podman: Podman, image: str) -> None:
    (inspected,) = json.loads(podman.run("image", "inspect", image).stdout)
    settings = inspected["Config"]
    assert settings["User"] == f"{PROBE_UID}:{PROBE_UID}"
    assert settings["Entrypoint"] == ["t3probe"]
    assert settings["Cmd"] == ["run", "--config", CONFIG_IN_IMAGE]
    assert inspected["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    # Kept only in the docker format; it asks the probe's own subcommand, not a fixed port.
    assert inspected["Healthcheck"]["Test"] == [
        "CMD",
        "t3probe",
        "healthcheck",
        "--config",
        CONFIG_IN_IMAGE,
    ]


def test_help_runs_read_only_unprivileged_offline(podman: Podman, image: str) -> None:
    result = podman.run("run", "--rm", "--no-healthcheck", *PRODUCTION_FLAGS, image, "--help")
    assert "usage: t3probe" in result.stdout
    assert "t3probe lab" in result.stdout


def test_runtime_image_has_no_package_installer(podman: Podman, image: str) -> None:
    result = podman.run(
        "run", "--rm", "--no-healthcheck", *PRODUCTION_FLAGS, "--entrypoint=python",
        image, "-m", "pip", "--version", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "No module named pip" in result.stderr


def test_check_config_on_a_mounted_config(podman: Podman, image: str, config: Path) -> None:
    result = podman.run(
        "run", "--rm", "--no-healthcheck", *PRODUCTION_FLAGS, _mount(config),
        image, "check-config", CONFIG_IN_IMAGE,
    )  # fmt: skip
    effective = yaml.safe_load(result.stdout)
    assert effective["listen"] == f"0.0.0.0:{PORT}"
    assert [leg["name"] for leg in effective["legs"]] == ["echo"]


def _fetch(podman: Podman, name: str, path: str) -> tuple[bool, str]:
    result = podman.run(
        "exec", name, "python", "-c", FETCH, f"http://127.0.0.1:{PORT}{path}", check=False
    )
    return result.returncode == 0, result.stdout + result.stderr


def _connected(podman: Podman, name: str) -> bool:
    ok, body = _fetch(podman, name, "/metrics")
    return ok and 't3probe_connected{leg="echo"} 1.0' in body


def test_run_serves_health_and_stops_on_sigterm(
    podman: Podman, image: str, config: Path, container_name: str
) -> None:
    podman.run(
        "run", "--detach", f"--name={container_name}", *PRODUCTION_FLAGS,
        "--tmpfs=/tmp:size=16m", _mount(config), image,
    )  # fmt: skip
    # The leg's peer: the reference echo, in the same container (and so on its loopback).
    podman.run("exec", "--detach", container_name, "t3probe", "echo", f"--listen={ECHO}")
    deadline = time.monotonic() + READY_WITHIN
    while not _connected(podman, container_name):
        assert time.monotonic() < deadline, podman.run("logs", container_name).stderr[-4000:]
        time.sleep(0.5)

    # The image's own HEALTHCHECK, run by podman, and the subcommand it calls.
    podman.run("healthcheck", "run", container_name)
    podman.run("exec", container_name, "t3probe", "healthcheck", "--config", CONFIG_IN_IMAGE)
    for path, answer in (("/healthz", "ok"), ("/readyz", "ready")):
        ok, body = _fetch(podman, container_name, path)
        assert ok and body.split() == ["200", answer], (path, body)

    # SIGTERM, then SIGKILL after 5 s: exit code 0 says the probe exited by itself in time.
    podman.run("stop", "--time=5", container_name, timeout=30)
    state = podman.run("inspect", "--format={{.State.ExitCode}}", container_name).stdout
    assert state.strip() == "0", podman.run("logs", container_name).stderr[-4000:]
