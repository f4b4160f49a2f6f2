"""Fuzzing with hypothesis: parsers, the config loader, the echo, and the probe's reader.

Network examples each run in a fresh event loop (``asyncio.run``) with their own
servers, so one example's leftovers cannot mask or cause another's failure; their
example counts are small and deadlines off, as a single example takes real time.
Nothing is written to a hypothesis database.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import math
import os
import re
import struct
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import psutil
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from t3probe.config import ProbeConfig
from t3probe.config_file import ConfigError, load_config
from t3probe.daemon import Probe
from t3probe.echo import EchoLimits, serve_echo
from t3probe.events import LegEvent
from t3probe.reasons import Reason
from t3probe.resolvers.dohwire import DohWireError, build_query, parse_answer
from tests.support.env import TIME_UNIT
from tests.support.frames import upgrade_request
from tests.support.harness import leg, probe_config, raw_tcp_server, rst

HOST = "t3.example.test"
QID = 0x2222
WIRE_REASONS = {"malformed", "servfail", "nxdomain", "empty"}
RSS_MARGIN_BYTES = 100 * 1024 * 1024

pytestmark = pytest.mark.timeout(90)

PURE = settings(max_examples=200, deadline=None, database=None)
NETWORK = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- DoH answers, structure-aware ----------------------------------------------------

NAMES = [HOST, HOST.upper(), "edge.cdn.test", "pop.cdn.test", "other.test"]
RCODES = [
    dns.rcode.NOERROR,
    dns.rcode.NOERROR,
    dns.rcode.NXDOMAIN,
    dns.rcode.SERVFAIL,
    dns.rcode.REFUSED,
]


@st.composite
def records(draw: st.DrawFn) -> tuple[str, str, int, str]:
    rdtype = draw(st.sampled_from(["A", "A", "AAAA", "CNAME", "TXT"]))
    if rdtype == "A":
        value = str(draw(st.ip_addresses(v=4)))
    elif rdtype == "AAAA":
        value = str(draw(st.ip_addresses(v=6)))
    elif rdtype == "CNAME":
        value = draw(st.sampled_from(NAMES)) + "."
    else:
        value = '"' + draw(st.text(alphabet="abcxyz 0123", max_size=20)) + '"'
    ttl = draw(st.integers(0, 2**31 - 1))
    return draw(st.sampled_from(NAMES)), rdtype, ttl, value


@st.composite
def dns_answers(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, int, str]], bool]:
    """A response built with dnspython from drawn parts, then perhaps damaged.

    Returns the wire, the records, and whether the header and question are exactly
    those of our query (then the records alone decide the outcome).
    """
    qname = draw(st.sampled_from([HOST, HOST, "other.test"]))
    qtype = draw(st.sampled_from([dns.rdatatype.A, dns.rdatatype.A, dns.rdatatype.AAAA]))
    query_id = draw(st.sampled_from([QID, QID, QID ^ 1]))
    query = dns.message.from_wire(build_query(qname, qtype, query_id))
    response = dns.message.make_response(query)
    response.set_rcode(draw(st.sampled_from(RCODES)))
    if draw(st.booleans()) and draw(st.booleans()):
        response.flags &= ~dns.flags.QR
    if draw(st.integers(0, 9)) == 0:
        response.flags |= dns.flags.TC
    drawn = draw(st.lists(records(), max_size=8))
    for name, rdtype, ttl, value in drawn:
        response.answer.append(
            dns.rrset.from_text_list(dns.name.from_text(name), ttl, "IN", rdtype, [value])
        )
    wire = bytearray(response.to_wire())
    damaged = False
    for position, byte in draw(
        st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=2)
    ):
        wire[position % len(wire)] = byte
        damaged = True
    if draw(st.integers(0, 9)) == 0:
        wire = wire[: draw(st.integers(0, len(wire)))]
        damaged = True
    exact = (
        not damaged
        and qname == HOST
        and qtype == dns.rdatatype.A
        and query_id == QID
        and bool(response.flags & dns.flags.QR)
        and not response.flags & dns.flags.TC
        and response.rcode() == dns.rcode.NOERROR
    )
    return bytes(wire), drawn, exact


@PURE
@given(dns_answers())
def test_doh_parser_on_structured_answers(case: tuple[bytes, list[Any], bool]) -> None:
    wire, drawn, exact = case
    failure: DohWireError | None = None
    try:
        answer = parse_answer(wire, HOST, dns.rdatatype.A, QID)
    except DohWireError as err:
        failure = err
    if failure is not None:
        assert failure.reason in WIRE_REASONS
        direct = [r for r in drawn if r[0].lower() == HOST and r[1] == "A"]
        # An undamaged answer carrying our A records directly must be believed.
        assert not (exact and direct), (failure, drawn)
        return
    assert answer.addresses
    for address in answer.addresses:
        assert ipaddress.ip_address(address).version == 4
    assert math.isfinite(answer.ttl) and answer.ttl >= 0
    if exact:
        # Every address comes from an A record in the answer, never from thin air.
        drawn_a = {value for _, rdtype, _, value in drawn if rdtype == "A"}
        assert set(answer.addresses) <= drawn_a


# --- config loader --------------------------------------------------------------------

TOP_KEYS = [
    "listen",
    "heartbeat_seconds",
    "watchdog_seconds",
    "attribution_window_seconds",
    "connect_timeout_seconds",
    "probe_stall_seconds",
    "backoff_initial_seconds",
    "backoff_max_seconds",
    "event_buffer_size",
    "max_message_bytes",
    "max_http_body_bytes",
]
LEG_KEYS = [
    "name",
    "kind",
    "url",
    "resolver",
    "segments",
    "ca_file",
    "expected_status",
    "require_header",
    "forbid_addresses",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["127.0.0.1:0", "ws://127.0.0.1:1/x", "10.0.0.0/8", "cf-ray", "a_b"]),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from([*LEG_KEYS, "address", "servers"]) | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
PLAUSIBLE = {
    "name": st.sampled_from(["ws", "a1", "Bad-Name", "x" * 40, ""]),
    "kind": st.sampled_from(["websocket", "http", "udp"]),
    "url": st.sampled_from(
        ["ws://127.0.0.1:1/p", "wss://h.test/p", "http://127.0.0.1:2/", "ftp://x", "ws://[::1", ""]
    ),
    "resolver": st.fixed_dictionaries(
        {"kind": st.sampled_from(["system", "pinned", "doh", "magic"])},
        optional={
            "address": st.sampled_from(["127.0.0.1", "::1", "nope"]),
            "servers": st.lists(st.sampled_from(["https://127.0.0.1/dns-query", "http://x"])),
            "timeout_seconds": SCALARS,
        },
    ),
    "segments": st.lists(st.sampled_from(["lb", "dispatch", "BAD", ""]), max_size=4),
    "forbid_addresses": st.lists(st.sampled_from(["127.0.0.0/8", "300.1.1.1/8", "x"]), max_size=2),
}
LEGS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={key: PLAUSIBLE.get(key, ANY_VALUE) | ANY_VALUE for key in LEG_KEYS},
    ),
    max_size=3,
)
CONFIGS = st.fixed_dictionaries(
    {},
    optional={"legs": LEGS | ANY_VALUE, **dict.fromkeys(TOP_KEYS, SCALARS | ANY_VALUE)},
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=8), ANY_VALUE, max_size=2).map(
        lambda extra: {**extra, **base}
    )
)


def _load(text: str) -> ProbeConfig | None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # A YAML boolean in an address field is coerced through int(bool), which warns;
        # that bug has its own test below, so it does not mask the rest of the search.
        warnings.filterwarnings("ignore", "__int__ returned non-int", DeprecationWarning)
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        message = ""
        try:
            return load_config(path)
        except ConfigError as err:
            message = str(err)
        assert message  # an operator-readable message, never empty
        return None


@PURE
@given(CONFIGS)
def test_config_loader_on_arbitrary_mappings(data: dict[str, Any]) -> None:
    config = _load(yaml.safe_dump(data))
    if config is not None:
        assert config.watchdog_seconds > config.heartbeat_seconds
        assert len(config.legs) >= 1


@PURE
@given(st.text(max_size=300))
def test_config_loader_on_arbitrary_text(text: str) -> None:
    _load(text)


def test_config_loader_rejects_a_boolean_address() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(
            "legs:\n  - {name: a, kind: websocket, url: 'ws://127.0.0.1:1/', segments: [x],"
            " forbid_addresses: [true]}\n"
        )
        with pytest.raises(ConfigError):
            load_config(path)


def test_config_loader_on_a_non_string_top_level_key() -> None:
    _load("1: 2\nlegs: []\n")


# --- the echo endpoint's frame handling ------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(
    opcode: int, payload: bytes, *, fin: bool, rsv: int, masked: bool, declared: int | None
) -> bytes:
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


CLIENT_FRAMES = st.one_of(
    st.builds(
        _frame,
        st.integers(0, 15),
        st.binary(max_size=300),
        fin=st.booleans(),
        rsv=st.integers(0, 7),
        masked=st.booleans(),
        declared=st.none() | st.integers(0, 2**63 - 1),
    ),
    st.builds(
        _frame,
        st.just(0x1),
        st.text(max_size=100).map(str.encode),
        fin=st.just(True),
        rsv=st.just(0),
        masked=st.just(True),
        declared=st.none(),
    ),
    st.binary(min_size=1, max_size=64),
)


async def _echo_survives(frames: list[bytes]) -> None:
    echo = await serve_echo("127.0.0.1", 0, EchoLimits(max_frame_bytes=512))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
        try:
            writer.write(upgrade_request(echo.port))
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            with contextlib.suppress(ConnectionError):
                for chunk in frames:
                    writer.write(chunk)
                await writer.drain()
            # Whatever the server answers (echoes, a close frame, EOF), it must not hang
            # on to memory or to the connection once we are gone.
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(0.3 * TIME_UNIT):
                    while await reader.read(65536):
                        pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{echo.port}/probe/healthz") as response:
                assert response.status == 200
            async with session.ws_connect(f"http://127.0.0.1:{echo.port}/probe/ws") as ws:
                await ws.send_str("still serving")
                assert await ws.receive_str(timeout=2 * TIME_UNIT) == "still serving"
        for _ in range(int(200 * TIME_UNIT)):  # server-side state: polled, no event
            if not echo.connection_count:
                break
            await asyncio.sleep(0.01)
        assert echo.connection_count == 0
    finally:
        await echo.stop()


@NETWORK
@given(st.lists(CLIENT_FRAMES, min_size=1, max_size=6))
def test_echo_survives_arbitrary_frames(frames: list[bytes]) -> None:
    asyncio.run(_echo_survives(frames))


# --- the probe against whatever an "echo" sends back -----------------------------------


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return _frame(opcode, payload, fin=fin, rsv=0, masked=False, declared=None)


SERVER_SENDS = st.one_of(
    st.text(max_size=60).map(lambda t: _server_frame(0x1, t.encode())),
    st.integers(0, 5).map(lambda n: _server_frame(0x1, f"t3probe {n}".encode())),
    st.binary(max_size=200).map(lambda b: _server_frame(0x2, b)),
    st.integers(5000, 2**40).map(
        lambda n: _frame(0x1, b"x" * 100, fin=True, rsv=0, masked=False, declared=n)
    ),
    st.just(_server_frame(0x2, b"\0" * (1 << 20))),
    st.tuples(st.integers(0, 5000), st.binary(max_size=20)).map(
        lambda c: _server_frame(0x8, struct.pack("!H", c[0]) + c[1])
    ),
    st.binary(max_size=120).map(lambda b: _server_frame(0x9, b)),
    st.text(max_size=20).map(lambda t: _server_frame(0x1, t.encode(), fin=False)),
    st.binary(min_size=1, max_size=64),
)


@contextlib.asynccontextmanager
async def hostile_echo(script: list[bytes], ending: str) -> AsyncIterator[int]:
    """Completes the upgrade properly, then sends ``script`` and ends as told."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        assert match is not None
        accept = base64.b64encode(hashlib.sha1(match.group(1) + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        for chunk in script:
            writer.write(chunk)
            await writer.drain()
        if ending == "hold":
            await asyncio.sleep(3600)
        elif ending == "rst":
            rst(writer.transport)

    async with raw_tcp_server(handle) as port:
        yield port


async def _probe_against(script: list[bytes], ending: str) -> list[LegEvent]:
    events: list[LegEvent] = []
    changed = asyncio.Event()

    def on_event(event: LegEvent) -> None:
        events.append(event)
        changed.set()

    async with hostile_echo(script, ending) as port:
        config = probe_config(
            [leg("ws", f"ws://127.0.0.1:{port}/probe/ws")],
            heartbeat_seconds=0.1 * TIME_UNIT,
            watchdog_seconds=0.4 * TIME_UNIT,
            probe_stall_seconds=0.3 * TIME_UNIT,
            backoff_initial_seconds=0.05,
            backoff_max_seconds=0.1,
        )
        probe = Probe(config, registry=CollectorRegistry(), emit_line=lambda _: None)
        probe.recorder.subscribe(on_event)
        await probe.start()
        try:
            # Whatever it sends, no real echo ever comes: the leg must go down, at the
            # latest when the watchdog fires after the last fake echo.
            async with asyncio.timeout(3 * TIME_UNIT):
                while not any(e.kind == "down" for e in events):
                    changed.clear()
                    await changed.wait()
            assert probe.lag.alive(1.0)
        finally:
            await probe.stop()
    return events


@NETWORK
@given(
    st.lists(SERVER_SENDS, max_size=5),
    st.sampled_from(["hold", "fin", "rst"]),
)
def test_probe_survives_whatever_the_echo_sends(script: list[bytes], ending: str) -> None:
    baseline = _RSS.setdefault("baseline", psutil.Process().memory_info().rss)
    events = asyncio.run(_probe_against(script, ending))
    downs = [e for e in events if e.kind == "down"]
    assert downs
    event(f"first drop: {downs[0].reason}")
    for down in downs:
        assert down.reason in set(Reason), down
        assert down.reason is not Reason.INTERNAL_ERROR, down
        assert len(down.detail) <= 300
    assert psutil.Process().memory_info().rss <= baseline + RSS_MARGIN_BYTES


_RSS: dict[str, int] = {}
