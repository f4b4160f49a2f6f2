"""The command line as a newcomer meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import free_port


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "t3probe", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["run", "check-config", "echo", "lab", "attribute"])
def test_every_command_has_help(command: str) -> None:
    result = _cli(command, "--help")
    assert result.returncode == 0
    assert f"usage: t3probe {command}" in result.stdout


def test_top_level_help_points_at_the_lab() -> None:
    result = _cli("--help")
    assert result.returncode == 0
    assert "t3probe lab" in result.stdout


def test_relative_time_works_without_an_equals_sign() -> None:
    # Exit 1 (source unreachable) proves "-15m" was parsed as the time, not an option.
    result = _cli("attribute", "--at", "-15m", "--events", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1, result.stderr


def test_echo_rejects_a_bad_listen_address() -> None:
    result = _cli("echo", "--listen", "nowhere")
    assert result.returncode == 2
    assert "--listen" in result.stderr


def test_log_level_from_the_environment_is_case_insensitive_and_checked() -> None:
    import os

    example = str(Path(__file__).resolve().parent.parent / "examples" / "loopback.yaml")
    for level, code in (("debug", 0), ("verbose", 2)):
        result = subprocess.run(
            [sys.executable, "-m", "t3probe", "check-config", example],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "T3PROBE_LOG_LEVEL": level},
        )  # fmt: skip
        assert result.returncode == code, result.stderr
