"""scripts/bootstrap.sh says what it is doing, and only when it does something."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"


def _bootstrap(environment: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if environment is not None:
        # A fresh environment elsewhere, filled from uv's cache: the checkout's own .venv
        # (the one running this test) is left alone.
        env.update(UV_PROJECT_ENVIRONMENT=str(environment), UV_OFFLINE="1")
    return subprocess.run(
        [str(BOOTSTRAP)], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )


def test_a_sync_is_announced_and_a_run_with_nothing_to_do_is_quiet(tmp_path: Path) -> None:
    first = _bootstrap(tmp_path / "venv")
    assert first.returncode == 0, first.stderr
    steps = [line for line in first.stderr.splitlines() if line.startswith("bootstrap: ")]
    assert steps == [f"bootstrap: syncing Python packages from uv.lock into {tmp_path / 'venv'}"]
    assert (tmp_path / "venv" / "bin" / "t3probe").exists()
    again = _bootstrap(tmp_path / "venv")
    assert again.returncode == 0 and again.stderr == ""
