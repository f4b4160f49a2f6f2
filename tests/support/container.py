"""Build and run the Dockerfile with Debian's podman + runc, without a registry.

The steps are ../shared/recipes/container-image.md's: a bookworm base made by mmdebstrap
stands in for python:3.11-slim-bookworm (passed as the Dockerfile's BASE), runc replaces
crun (which refuses this kind of machine's hybrid cgroup layout), and the host's CA bundle
and pip/uv settings are mounted into the RUN steps that download packages.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import IN_CI
from tests.support.tools import find_tool

# What the official image offers and the build needs: python and pip at /usr/local/bin
# (a venv over Debian's python3, since Debian disables ensurepip for the system one).
BASE_PACKAGES = "python3,python3-venv,ca-certificates,netbase,tzdata"
BASE_HOOK = 'chroot "$1" python3 -m venv /usr/local'
BASE_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*")
BASE_ENV = ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# The tag names the recipe: changing it builds a new base instead of reusing a stale one.
_RECIPE = repr((BASE_PACKAGES, BASE_HOOK, BASE_DPKG_EXCLUDES, BASE_ENV)).encode()
BASE_IMAGE = f"localhost/t3probe-test-base:bookworm-{hashlib.sha256(_RECIPE).hexdigest()[:12]}"
BASE_LOCK = Path("/var/tmp/t3probe-test-base.lock")

# This kind of machine's hard RLIMIT_NOFILE is 20000, below podman's default ulimits.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
# uv ships its own root certificates; the machine's proxy CA is only in the system bundle.
UV_TOML = "native-tls = true\n"
HOST_BUILD_MOUNTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")

MMDEBSTRAP_TIMEOUT = 900.0
BUILD_TIMEOUT = 600.0
COMMAND_TIMEOUT = 60.0


def unavailable(reason: str) -> None:
    """Skip with a loud reason on a laptop; under CI=true, fail."""
    message = f"!!! CONTAINER IMAGE NOT TESTED: {reason} !!!"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Podman:
    """podman with this machine's runtime settings, in a directory of its own."""

    def __init__(self, workdir: Path) -> None:
        if os.geteuid() != 0:
            unavailable("needs root (podman builds and runs the image as root here)")
        tools = {name: find_tool(name) for name in ("podman", "runc", "mmdebstrap")}
        missing = [name for name, path in tools.items() if path is None]
        if missing:
            unavailable(
                f"{', '.join(missing)} not found: apt-get install podman runc mmdebstrap uidmap"
                " (scripts/bootstrap.sh --system does)"
            )
        self.podman = str(tools["podman"])
        self.mmdebstrap = str(tools["mmdebstrap"])
        self.workdir = workdir
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.uv_toml = workdir / "uv.toml"
        self.uv_toml.write_text(UV_TOML, encoding="utf-8")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.podman, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def ensure_base(self) -> str:
        """The local stand-in for the official Python image, built once per machine."""
        with _exclusive(BASE_LOCK):
            if self.image_exists(BASE_IMAGE):
                return BASE_IMAGE
            with tempfile.TemporaryDirectory(dir=self.workdir) as scratch:
                rootfs = Path(scratch) / "rootfs.tar"
                excludes = [f"--dpkgopt=path-exclude={glob}" for glob in BASE_DPKG_EXCLUDES]
                command = [
                    self.mmdebstrap,
                    "--variant=minbase",
                    f"--include={BASE_PACKAGES}",
                    *excludes,
                    f"--customize-hook={BASE_HOOK}",
                    "bookworm",
                    str(rootfs),
                ]
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=MMDEBSTRAP_TIMEOUT,
                    check=False,
                )
                if proc.returncode != 0:
                    pytest.fail(f"mmdebstrap exited {proc.returncode}\n{proc.stderr[-4000:]}")
                changes = [arg for env in BASE_ENV for arg in ("--change", f"ENV {env}")]
                self.run("import", *changes, str(rootfs), BASE_IMAGE, timeout=BUILD_TIMEOUT)
        return BASE_IMAGE

    def build(self, context: Path, base: str) -> str:
        """Build the Dockerfile on ``base``; the new image's ID (no tag, no cached layers)."""
        iidfile = self.workdir / "image-id"
        mounts = [f"--volume={path}:{path}:ro" for path in HOST_BUILD_MOUNTS if Path(path).exists()]
        self.run(
            "build",
            # docker format: the OCI format has no HEALTHCHECK and drops it.
            "--format=docker",
            "--pull=never",
            # No intermediate images are kept, so removing the result leaves nothing behind.
            "--layers=false",
            f"--build-arg=BASE={base}",
            *mounts,
            f"--volume={self.uv_toml}:/etc/uv/uv.toml:ro",
            f"--iidfile={iidfile}",
            str(context),
            timeout=BUILD_TIMEOUT,
        )
        return iidfile.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One base build at a time on this machine (two worktrees' suites may race)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
