"""A failed connect names the phase it stalled in (tcp, tls, upgrade), and each phase is timed.

SYN loss and a stalled TLS handshake are both ``connect_timeout``, but they point at
different segments: the detail and ``t3probe_connect_duration_seconds{phase}`` tell them
apart. Every peer is a real socket on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import websockets.asyncio.server as ws_server

from t3probe.lab.pki import Pki
from t3probe.reasons import CONNECT_PHASES, Reason
from tests.support.env import TIME_UNIT
from tests.support.harness import (
    RunningProbe,
    free_port,
    leg,
    probe_config,
    raw_tcp_server,
    running_probe,
)

CONNECT_TIMEOUT = 0.5 * TIME_UNIT


def phase_count(probe: RunningProbe, leg_name: str, phase: str) -> float:
    """Observations of ``phase``; a series that does not exist counts none."""
    labels = {"leg": leg_name, "phase": phase}
    return probe.metric("t3probe_connect_duration_seconds_count", **labels) or 0.0


def tls_leg(name: str, port: int, pki: Pki) -> dict[str, Any]:
    """A wss leg for the test CA's name, pinned to 127.0.0.1, trusting only that CA."""
    return leg(
        name,
        f"wss://t3.lab.test:{port}/probe/ws",
        resolver={"kind": "pinned", "address": "127.0.0.1"},
        ca_file=str(pki.ca_cert),
    )


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the TCP connection, read whatever comes (a ClientHello, a GET), say nothing."""
    while await reader.read(4096):
        pass


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full: the kernel drops every further SYN.

    With a backlog of 0 one connection, never accepted, fills the queue; a new client's
    SYNs then go unanswered, which is SYN loss on loopback without root.
    """
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        filler.connect(("127.0.0.1", port))
        yield port


async def test_a_tls_handshake_that_never_answers_is_a_timeout_in_phase_tls(pki: Pki) -> None:
    async with raw_tcp_server(never_answer) as port:
        config = probe_config([tls_leg("tls", port, pki)], connect_timeout_seconds=CONNECT_TIMEOUT)
        async with running_probe(config) as probe:
            down = await probe.wait_for("tls", "down")
            assert down.reason is Reason.CONNECT_TIMEOUT, down.detail
            assert "(phase tls)" in down.detail, down.detail
            # TCP itself came up: the histogram says so, and nothing finished TLS.
            assert phase_count(probe, "tls", "tcp") >= 1
            assert phase_count(probe, "tls", "tls") == 0


async def test_lost_syns_are_a_timeout_in_phase_tcp() -> None:
    with full_backlog() as port:
        config = probe_config(
            [leg("ws", f"ws://127.0.0.1:{port}/probe/ws")],
            connect_timeout_seconds=CONNECT_TIMEOUT,
        )
        async with running_probe(config) as probe:
            down = await probe.wait_for("ws", "down")
            assert down.reason is Reason.CONNECT_TIMEOUT, down.detail
            assert "(phase tcp)" in down.detail, down.detail
            assert phase_count(probe, "ws", "tcp") == 0


async def test_a_refused_connection_names_phase_tcp() -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{free_port()}/probe/ws")])
    async with running_probe(config) as probe:
        down = await probe.wait_for("ws", "down")
        assert down.reason is Reason.CONNECT_REFUSED, down.detail
        assert "(phase tcp)" in down.detail, down.detail


async def test_an_upgrade_that_never_answers_is_a_timeout_in_phase_upgrade() -> None:
    async with raw_tcp_server(never_answer) as port:
        config = probe_config(
            [leg("ws", f"ws://127.0.0.1:{port}/probe/ws")],
            connect_timeout_seconds=CONNECT_TIMEOUT,
        )
        async with running_probe(config) as probe:
            down = await probe.wait_for("ws", "down")
            assert down.reason is Reason.CONNECT_TIMEOUT, down.detail
            assert "(phase upgrade)" in down.detail, down.detail
            assert phase_count(probe, "ws", "tcp") >= 1
            assert phase_count(probe, "ws", "upgrade") == 0


async def test_a_wss_leg_times_every_phase_tcp_and_tls_apart(pki: Pki) -> None:
    async def echo(connection: ws_server.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with ws_server.serve(echo, "127.0.0.1", 0, ssl=pki.server_context()) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = probe_config([tls_leg("wss", port, pki)])
        async with running_probe(config) as probe:
            await probe.wait_for("wss", "up")
            counts = {phase: phase_count(probe, "wss", phase) for phase in CONNECT_PHASES}
            assert counts == {"dns": 1, "tcp": 1, "tls": 1, "upgrade": 1}
            # The old phases (TCP and TLS as one "connect", "handshake") are gone.
            count = "t3probe_connect_duration_seconds_count"
            for old in ("connect", "handshake"):
                assert probe.metric(count, leg="wss", phase=old) is None
