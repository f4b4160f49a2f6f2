"""Credentials and tokens in leg and DoH server URLs never leave the probe.

A probe whose leg URL carries ``user:pass@`` and ``?token=`` and whose DoH server URL
carries the same is driven through failures that quote those URLs: a DoH server
answering garbage, an upgrade refused, a bug in a leg, a reload with a bad server URL.
Nothing the probe exports or logs may hold a secret.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from t3probe.config_file import load_config
from t3probe.daemon import Probe
from t3probe.lab.dohserver import DohServer
from t3probe.lab.pki import Pki
from t3probe.legs import websocket
from tests.support.env import TIME_UNIT
from tests.support.harness import Peer, RunningProbe, eventually, leg

HOST = "t3.secret.test"
SECRETS = ("leguser", "legpass", "LEGTOKEN", "dohuser", "dohpass", "DOHTOKEN")

WAIT = 5.0 * TIME_UNIT

pytestmark = pytest.mark.timeout(60)


def with_secrets(url: str, user: str, password: str, token: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}?token={token}&keep=1"


@pytest.fixture
async def secret_doh(pki: Pki) -> AsyncIterator[DohServer]:
    server = DohServer({HOST: ["127.0.0.1"]})
    await server.start("127.0.0.1", 0, pki.server_context())
    yield server
    await server.stop()


def config_text(peer: Peer, pki: Pki, doh_url: str, bugged_url: str) -> str:
    resolver = {
        "kind": "doh",
        "servers": [doh_url],
        "ca_file": str(pki.ca_cert),
        "timeout_seconds": 0.3 * TIME_UNIT,
    }
    settings = {
        "listen": "127.0.0.1:0",
        "heartbeat_seconds": 0.2 * TIME_UNIT,
        "watchdog_seconds": 0.6 * TIME_UNIT,
        "probe_stall_seconds": 0.4 * TIME_UNIT,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2 * TIME_UNIT,
        "legs": [
            leg(
                "refused",
                with_secrets(f"ws://{HOST}:{peer.port}/reject", "leguser", "legpass", "LEGTOKEN"),
                resolver=resolver,
            ),
            leg("bugged", bugged_url, resolver={"kind": "pinned", "address": "127.0.0.1"}),
        ],
    }
    return yaml.safe_dump(settings)


def quoted(running: RunningProbe, text: str) -> bool:
    return any(text in event.detail for event in running.events)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}: {text[:2000]}"


async def test_no_secret_in_events_lines_metrics_logs_or_reload_answers(
    peer: Peer,
    pki: Pki,
    secret_doh: DohServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="t3probe")
    doh_url = with_secrets(secret_doh.url, "dohuser", "dohpass", "DOHTOKEN")
    bugged_url = with_secrets(
        f"ws://127.0.0.1:{peer.port}/probe/ws", "leguser", "legpass", "LEGTOKEN"
    )

    def buggy_check_peer(*_: object) -> None:
        # A bug whose exception text quotes the URL, as library errors do.
        raise RuntimeError(f"unexpected state talking to {bugged_url}")

    monkeypatch.setattr(websocket, "check_peer", buggy_check_peer)
    path = tmp_path / "t3probe.yaml"
    path.write_text(config_text(peer, pki, doh_url, bugged_url))
    lines: list[str] = []
    probe = Probe(
        load_config(path, environ={}),
        registry=CollectorRegistry(),
        emit_line=lines.append,
        config_source=lambda: load_config(path, environ={}),
    )
    running = RunningProbe(probe)
    await probe.start()
    try:
        # Waiting on what the details quote, not on the reason: a loaded machine may turn
        # any of these into probe_stall, with the same detail.
        with secret_doh.garbage():
            await eventually(lambda: quoted(running, "/dns-query?token=REDACTED"), within=WAIT)
        await eventually(lambda: quoted(running, "/reject?token=REDACTED"), within=WAIT)
        await eventually(lambda: quoted(running, "unexpected state talking to"), within=WAIT)
        # A reload whose DoH server URL is refused, quoting it in the reason.
        path.write_text(config_text(peer, pki, doh_url.replace("https", "http", 1), bugged_url))
        base = f"http://127.0.0.1:{probe.port}"
        async with aiohttp.ClientSession() as client:
            async with client.post(f"{base}/-/reload") as response:
                reload_status, reload_answer = response.status, await response.text()
            answers = {}
            for endpoint in ("/events", "/metrics", "/verdict"):
                async with client.get(f"{base}{endpoint}") as response:
                    answers[endpoint] = await response.text()
    finally:
        await probe.stop()

    # The failures quoted the URLs, so the checks below bite.
    assert reload_status == 500 and "https://" in reload_answer
    assert "t3probe_doh_server_up{" in answers["/metrics"]
    assert any(record.exc_text or "Traceback" in record.getMessage() for record in caplog.records)

    assert_no_secret("the reload answer", reload_answer)
    for endpoint, text in answers.items():
        assert_no_secret(endpoint, text)
    assert_no_secret("stdout lines", "\n".join(lines))
    assert_no_secret("logs", caplog.text)
    for record in caplog.records:
        assert_no_secret("a log record", record.getMessage() + (record.exc_text or ""))
