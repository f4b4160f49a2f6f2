"""Suite-wide rules (loopback only, no skips in CI) and the fixtures several modules share."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from t3probe import netguard

# Every test runs with outgoing connections restricted to loopback; a child process
# started by a test inherits the same rule through this variable.
netguard.install()
os.environ["T3PROBE_LOOPBACK_ONLY"] = "1"

# Imported after the guard, as test modules always are: a module that copies a socket
# function when it is imported gets the guarded one.
import aiohttp  # noqa: E402

from t3probe.lab.backend import BackendServer, serve_backend  # noqa: E402
from t3probe.lab.pki import Pki, make_pki  # noqa: E402
from t3probe.resolvers.doh import DohResolver  # noqa: E402
from tests.support.attribute import Topology  # noqa: E402
from tests.support.env import IN_CI, TIME_UNIT  # noqa: E402
from tests.support.fakes import FakeClock, MakeResolver, Sink  # noqa: E402
from tests.support.harness import Peer, leg, probe_config, running_probe  # noqa: E402


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


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    """The misbehaving aiohttp peer of tests/support/harness.py, on 127.0.0.1."""
    server = await Peer().start()
    yield server
    await server.stop()


@pytest.fixture
async def backend() -> AsyncIterator[BackendServer]:
    """The lab backend (the "t3 serve" stand-in) on 127.0.0.1."""
    server = await serve_backend("127.0.0.1", 0)
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA and a leaf for t3.lab.test, 127.0.0.1 and ::1; one per module."""
    return make_pki(tmp_path_factory.mktemp("pki"), ["t3.lab.test"], ["127.0.0.1", "::1"])


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    """A live probe whose three legs are up, over two peers; see Topology."""
    edge, core = await Peer().start(), await Peer().start()
    config = probe_config(
        [
            leg("edge", f"ws://127.0.0.1:{edge.port}/probe/ws", segments=["wan", "edge", "core"]),
            leg("core", f"ws://127.0.0.1:{core.port}/probe/ws", segments=["core"]),
            leg("backend", f"http://127.0.0.1:{core.port}/ok", kind="http", segments=["backend"]),
        ]
    )
    started = time.time()
    try:
        async with running_probe(config) as probe:
            for name in ("edge", "core", "backend"):
                await probe.wait_for(name, "up")
            yield Topology(edge, core, probe, started)
    finally:
        await edge.stop()
        await core.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def dns_timeout() -> float:
    """A DoH server's timeout: long enough for a real server's HTTP/2 and TLS on a loaded
    machine, short enough that a hung server costs the suite little."""
    return 0.3 * TIME_UNIT


@pytest.fixture
async def make_resolver(
    pki: Pki, clock: FakeClock, sink: Sink, dns_timeout: float
) -> AsyncIterator[MakeResolver]:
    """DoH resolvers trusting the test CA, on the fake clock, reporting into ``sink``."""
    made: list[DohResolver] = []

    def make(servers: list[str], **overrides: Any) -> DohResolver:
        options: dict[str, Any] = {
            "on_failure": sink,
            "on_server_state": sink.server_state,
            "timeout": dns_timeout,
            "ssl_context": pki.client_context(),
            "max_stale_seconds": 300.0,
            "min_ttl_seconds": 1.0,
            "clock": clock,
        }
        options.update(overrides)
        resolver = DohResolver(servers, **options)
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.close()
