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


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "loopback.yaml"


def test_log_level_works_after_the_subcommand_too() -> None:
    # asyncio says which selector it uses at DEBUG only: proof the level took effect.
    unreachable = f"http://127.0.0.1:{free_port()}"
    after = _cli("attribute", "--at", "-15m", "--events", unreachable, "--log-level", "debug")
    assert after.returncode == 1, after.stderr
    assert "DEBUG asyncio" in after.stderr
    # The subcommand's own value wins over the one given before it.
    both = _cli("--log-level", "DEBUG", "attribute", "--at=-15m", "--events", unreachable,
                "--log-level", "ERROR")  # fmt: skip
    assert "DEBUG asyncio" not in both.stderr
    before = _cli("--log-level", "DEBUG", "attribute", "--at=-15m", "--events", unreachable)
    assert "DEBUG asyncio" in before.stderr


def _bad_config(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("legs: [{name: a, kind: http, url: 'http://127.0.0.1:1/', segments: []}]\n")
    return str(path)


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_the_config_file_may_be_given_with_or_without_config(command: str, tmp_path: Path) -> None:
    bad = _bad_config(tmp_path)
    for args in ([bad], ["--config", bad]):
        result = _cli(command, *args)
        # Exit 2 naming the field: the file was read, not refused by the argument parser.
        assert result.returncode == 2
        assert "legs[0].segments" in result.stderr, result.stderr


def test_check_config_prints_the_config_given_with_config() -> None:
    result = _cli("check-config", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "legs:" in result.stdout


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_file_given_both_ways_is_refused(command: str, tmp_path: Path) -> None:
    result = _cli(command, str(EXAMPLE), "--config", _bad_config(tmp_path))
    assert result.returncode == 2
    assert "not both" in result.stderr


def test_check_config_without_a_file_says_how_to_give_one() -> None:
    result = _cli("check-config")
    assert result.returncode == 2
    assert "FILE or --config FILE" in result.stderr


def test_scenarios_accumulate_and_are_all_checked() -> None:
    from t3probe.cli import _parser

    args = _parser().parse_args(["lab", "--scenario", "baseline", "--scenario", "lb_refuse"])
    assert args.scenario == ["baseline", "lb_refuse"]
    # An unknown name anywhere in the list is refused before anything runs.
    result = _cli("lab", "--scenario", "meteor", "--scenario", "baseline")
    assert result.returncode == 2
    assert "unknown scenario 'meteor'" in result.stderr


@pytest.mark.parametrize(
    ("command", "defaults"),
    [("echo", ["127.0.0.1:8765"]), ("lab", ["127.0.0.1:9108", "127.0.0.1:9109"])],
)
def test_help_shows_the_defaults(command: str, defaults: list[str]) -> None:
    result = _cli(command, "--help")
    assert result.returncode == 0
    for default in defaults:
        assert f"(default: {default})" in " ".join(result.stdout.split()), result.stdout
