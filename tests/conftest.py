"""Suite-wide rules: loopback only, no skips in CI, one scalable timing unit."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from t3probe import netguard

# Every test runs with outgoing connections restricted to loopback; a child process
# started by a test inherits the same rule through this variable.
netguard.install()
os.environ["T3PROBE_LOOPBACK_ONLY"] = "1"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One timing unit for every sleep and deadline in the suite; slow machines raise it.
TIME_UNIT = float(os.environ.get("T3PROBE_TEST_TIME_UNIT", "1.0"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if IN_CI and report.skipped:
        # Under CI a skip hides a missing install step: it must fail loudly instead.
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {report.longrepr}"


@pytest.fixture
def time_unit() -> float:
    return TIME_UNIT
