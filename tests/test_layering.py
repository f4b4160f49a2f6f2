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


def _fixture_names(tree: ast.Module) -> list[str]:
    """Names of the fixtures a module defines: ``@pytest.fixture`` with or without
    arguments, named by the function or by ``name=``."""
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            if ast.unparse(target) not in ("pytest.fixture", "fixture"):
                continue
            name = node.name
            for keyword in call.keywords if call is not None else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = str(keyword.value.value)
            names.append(name)
    return names


def test_no_fixture_is_defined_twice() -> None:
    """One definition per fixture: a copy in a second module drifts from the first, and a
    module that shadows a conftest fixture silently changes what its tests get."""
    where: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        if path.name.startswith("test_") or path.name == "conftest.py":
            for name in _fixture_names(ast.parse(path.read_text())):
                where.setdefault(name, []).append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


def test_the_fixture_check_sees_every_decorator_form() -> None:
    source = (
        "import pytest\n"
        "@pytest.fixture\ndef plain(): ...\n"
        "@pytest.fixture(scope='module')\nasync def called(): ...\n"
        "@pytest.fixture(name='renamed')\ndef _impl(): ...\n"
        "def helper(): ...\n"
    )
    assert _fixture_names(ast.parse(source)) == ["plain", "called", "renamed"]
