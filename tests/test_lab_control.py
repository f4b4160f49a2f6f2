"""The lab's control API as a user meets it with curl: clear refusals, readable help."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from t3probe.lab.control import LabControl, make_control_app
from t3probe.lab.topology import Lab

Client = TestClient[web.Request, web.Application]
HELP = ["first line of help", "second line of help"]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    lab = Lab("127.0.0.1:0", emit_line=lambda _: None)
    await lab.start()
    assert lab.parts is not None
    control = LabControl(lab.parts)
    try:
        async with TestClient(TestServer(make_control_app(control, lambda: HELP))) as test_client:
            yield test_client
    finally:
        control.clear_all()
        await lab.stop()


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/lab/fault/edge/latency?ms=abc", "ms", "abc"),
        ("/lab/fault/lb/latency?ms=nan", "ms", "nan"),
        ("/lab/fault/dispatch/close?code=abc", "code", "abc"),
        ("/lab/fault/dispatch/close?code=99999", "code", "99999"),
    ],
)
async def test_a_bad_parameter_is_refused_naming_it(
    client: Client, path: str, name: str, value: str
) -> None:
    response = await client.post(path)
    assert response.status == 400
    error = (await response.json())["error"]
    assert f"{name}={value!r}" in error, error
    assert "\n" not in error and "could not convert" not in error and "int()" not in error


async def test_a_good_parameter_is_applied(client: Client) -> None:
    response = await client.post("/lab/fault/edge/latency?ms=50")
    assert response.status == 200
    assert (await response.json())["active"] == {"edge": "latency(ms=50)"}


async def test_the_help_is_structured(client: Client) -> None:
    response = await client.get("/lab")
    assert response.status == 200
    body = await response.json()
    assert body["help"] == HELP
    assert "POST /lab/fault/{target}/{fault}" in body["endpoints"]
    assert all("\n" not in text for text in body["endpoints"].values())
    assert body["targets"]["dispatch"] == ["close"]
