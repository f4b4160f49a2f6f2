"""The real tools the ops-artifact tests run offline: promtool, hadolint, kubectl, ...

A missing tool skips locally with a loud reason and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.artifacts import ROOT
from tests.support.env import IN_CI

TOOL_TIMEOUT = 120.0


def find_tool(name: str) -> str | None:
    """``name`` on PATH, the running interpreter's bin dir (the venv) searched first."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=search)


def require_tool(name: str, how: str) -> str:
    path = find_tool(name)
    if path is None:
        message = (
            f"!!! {name} NOT FOUND: this ops-artifact check cannot run. Install it ({how}). !!!"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool() -> str:
    return require_tool("promtool", "Debian: apt-get install prometheus")


def run_tool(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail the test with its full output unless it exits 0."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def promtool_check_queries(queries: list[str], tmp_path: Path, label: str) -> None:
    """Parse each query with promtool by wrapping it in a recording rule."""
    rules = [
        {"record": f"t3probe_query_check_{i}", "expr": query} for i, query in enumerate(queries)
    ]
    path = tmp_path / f"{label}.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": label, "rules": rules}]}), "utf-8")
    run_tool([promtool(), "check", "rules", str(path)])
