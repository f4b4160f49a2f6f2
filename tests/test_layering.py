"""The code's seams hold: the pure core does no I/O, tests do not lean on each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PURE_CORE = (
    "t3probe.reasons",
    "t3probe.attribution",
    "t3probe.config",
    "t3probe.legstate",
    "t3probe.legs.budget",
    "t3probe.legs.heartbeat",
)
# ssl (and with it socket) is imported only to recognise its exception types.
IO_MODULES = ("aiohttp", "asyncio", "prometheus_client", "yaml", "pydantic_settings")


def test_the_pure_core_imports_nothing_that_does_io() -> None:
    imports = "; ".join(f"import {module}" for module in PURE_CORE)
    check = f"{imports}; import sys; print(sorted(m for m in {IO_MODULES!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_test_module_imports_another_test_module() -> None:
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                name = node.module.rsplit(".", 1)[-1]
                if node.module.startswith("tests.") and name.startswith("test_"):
                    offenders.append(f"{path.relative_to(TESTS)} imports {node.module}")
    assert offenders == []
