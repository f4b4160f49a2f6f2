"""RFC 8484 wire format: building queries and distrusting answers."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from t3probe.resolvers.dohwire import (
    MAX_CNAME_DEPTH,
    MAX_WIRE_BYTES,
    Answer,
    DohWireError,
    build_query,
    parse_answer,
)

HOST = "t3.example.test"
QID = 0x1234
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA


def _response(qtype: int = A, *, host: str = HOST, query_id: int = QID) -> dns.message.Message:
    query = dns.message.from_wire(build_query(host, qtype, query_id))
    return dns.message.make_response(query)


def _add(message: dns.message.Message, name: str, rdtype: str, ttl: int, *values: str) -> None:
    message.answer.append(
        dns.rrset.from_text_list(
            dns.name.from_text(name), ttl, dns.rdataclass.IN, rdtype, list(values)
        )
    )


def _valid_a() -> bytes:
    response = _response()
    _add(response, HOST, "A", 30, "127.0.0.2")
    return response.to_wire()


def _two_a() -> bytes:
    response = _response()
    _add(response, HOST, "A", 30, "127.0.0.2", "127.0.0.3")
    return response.to_wire()


def _aaaa() -> bytes:
    response = _response(AAAA)
    _add(response, HOST, "AAAA", 45, "::1")
    return response.to_wire()


def _cname_chain() -> bytes:
    response = _response()
    _add(response, HOST, "CNAME", 300, "edge.cdn.test.")
    _add(response, "edge.cdn.test.", "CNAME", 100, "pop.cdn.test.")
    _add(response, "pop.cdn.test.", "A", 200, "127.0.0.7")
    return response.to_wire()


def _cname_only() -> bytes:
    response = _response()
    _add(response, HOST, "CNAME", 300, "edge.cdn.test.")
    return response.to_wire()


def _cname_chain_without_target() -> bytes:
    response = _response()
    _add(response, HOST, "CNAME", 300, "edge.cdn.test.")
    _add(response, "edge.cdn.test.", "CNAME", 100, "pop.cdn.test.")
    return response.to_wire()


def _cname_loop() -> bytes:
    response = _response()
    _add(response, HOST, "CNAME", 300, "loop.test.")
    _add(response, "loop.test.", "CNAME", 300, f"{HOST}.")
    return response.to_wire()


def _cname_too_long() -> bytes:
    response = _response()
    names = [HOST] + [f"hop{i}.test" for i in range(MAX_CNAME_DEPTH + 1)]
    for source, target in itertools.pairwise(names):
        _add(response, source, "CNAME", 60, f"{target}.")
    _add(response, names[-1], "A", 60, "127.0.0.9")
    return response.to_wire()


def _cname_at_limit() -> bytes:
    response = _response()
    names = [HOST] + [f"hop{i}.test" for i in range(MAX_CNAME_DEPTH)]
    for source, target in itertools.pairwise(names):
        _add(response, source, "CNAME", 60, f"{target}.")
    _add(response, names[-1], "A", 60, "127.0.0.9")
    return response.to_wire()


def _unrelated_a() -> bytes:
    # An address for a name we did not ask about must not be taken as ours.
    response = _response()
    _add(response, "evil.test", "A", 30, "127.0.0.66")
    return response.to_wire()


def _rcode(rcode: dns.rcode.Rcode) -> Callable[[], bytes]:
    def make() -> bytes:
        response = _response()
        response.set_rcode(rcode)
        return response.to_wire()

    return make


def _empty_answer() -> bytes:
    return _response().to_wire()


def _wrong_id() -> bytes:
    response = _response(query_id=QID + 1)
    _add(response, HOST, "A", 30, "127.0.0.2")
    return response.to_wire()


def _not_a_response() -> bytes:
    return build_query(HOST, A, QID)


def _truncated_bytes() -> bytes:
    return _valid_a()[:-3]


def _tc_bit() -> bytes:
    response = _response()
    response.flags |= dns.flags.TC
    _add(response, HOST, "A", 30, "127.0.0.2")
    return response.to_wire()


def _tc_bit_no_answer() -> bytes:
    response = _response()
    response.flags |= dns.flags.TC
    return response.to_wire()


def _wrong_question_name() -> bytes:
    response = _response(host="other.example.test")
    _add(response, "other.example.test", "A", 30, "127.0.0.2")
    return response.to_wire()


def _wrong_question_type() -> bytes:
    response = _response(AAAA)
    _add(response, HOST, "A", 30, "127.0.0.2")
    return response.to_wire()


def _no_question() -> bytes:
    response = _response()
    response.question = []
    return response.to_wire()


def _case_changed_question() -> bytes:
    response = _response(host=HOST.upper())
    _add(response, HOST.upper(), "A", 30, "127.0.0.2")
    return response.to_wire()


def _oversize() -> bytes:
    return _valid_a() + b"\0" * MAX_WIRE_BYTES


@dataclass(frozen=True)
class Case:
    name: str
    wire: Callable[[], bytes]
    qtype: int = A
    answer: Answer | None = None
    reason: str | None = None


CASES = [
    Case("valid A", _valid_a, answer=Answer(("127.0.0.2",), 30.0)),
    Case("two A", _two_a, answer=Answer(("127.0.0.2", "127.0.0.3"), 30.0)),
    Case("AAAA", _aaaa, qtype=AAAA, answer=Answer(("::1",), 45.0)),
    Case("CNAME chain, min TTL", _cname_chain, answer=Answer(("127.0.0.7",), 100.0)),
    Case("CNAME chain at the depth limit", _cname_at_limit, answer=Answer(("127.0.0.9",), 60.0)),
    Case("case-insensitive question", _case_changed_question, answer=Answer(("127.0.0.2",), 30.0)),
    # Deliberately changed with #19: the resolver follows the chain with a second query.
    Case("CNAME only", _cname_only, answer=Answer((), 300.0, target="edge.cdn.test")),
    Case(
        "CNAME chain without its target",
        _cname_chain_without_target,
        answer=Answer((), 100.0, target="pop.cdn.test"),
    ),
    Case("CNAME loop", _cname_loop, reason="malformed"),
    Case("CNAME chain too long", _cname_too_long, reason="malformed"),
    Case("A for another name only", _unrelated_a, reason="empty"),
    Case("NOERROR, empty answer", _empty_answer, reason="empty"),
    Case("NXDOMAIN", _rcode(dns.rcode.NXDOMAIN), reason="nxdomain"),
    Case("SERVFAIL", _rcode(dns.rcode.SERVFAIL), reason="servfail"),
    Case("REFUSED", _rcode(dns.rcode.REFUSED), reason="servfail"),
    Case("FORMERR", _rcode(dns.rcode.FORMERR), reason="servfail"),
    Case("wrong id", _wrong_id, reason="malformed"),
    Case("a query, not a response", _not_a_response, reason="malformed"),
    Case("truncated bytes", _truncated_bytes, reason="malformed"),
    Case("garbage", lambda: b"\x8f\x00garbage that is not DNS at all", reason="malformed"),
    Case("no bytes", lambda: b"", reason="malformed"),
    Case("TC bit with answer", _tc_bit, reason="malformed"),
    Case("TC bit without answer", _tc_bit_no_answer, reason="malformed"),
    Case("wrong question name", _wrong_question_name, reason="malformed"),
    Case("wrong question type", _wrong_question_type, reason="malformed"),
    Case("no question", _no_question, reason="malformed"),
    Case("oversize", _oversize, reason="malformed"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_parse_answer(case: Case) -> None:
    wire = case.wire()
    if case.answer is not None:
        answer = parse_answer(wire, HOST, case.qtype, QID)
        # dnspython shuffles records when writing wire, as servers rotate them.
        assert sorted(answer.addresses) == sorted(case.answer.addresses)
        assert answer.ttl == case.answer.ttl
        assert answer.target == case.answer.target
    else:
        with pytest.raises(DohWireError) as info:
            parse_answer(wire, HOST, case.qtype, QID)
        assert info.value.reason == case.reason


def test_a_chain_names_the_aliases_it_followed() -> None:
    answer = parse_answer(_cname_chain_without_target(), HOST, A, QID)
    assert answer.aliases == (HOST, "edge.cdn.test")


def test_host_with_trailing_dot_matches() -> None:
    assert parse_answer(_valid_a(), f"{HOST}.", A, QID).addresses == ("127.0.0.2",)


def test_build_query_is_a_recursive_question_with_our_id() -> None:
    query = dns.message.from_wire(build_query(HOST, AAAA, 0xBEEF))
    assert query.id == 0xBEEF
    assert query.flags & dns.flags.RD
    assert not query.flags & dns.flags.QR
    [question] = query.question
    assert question.name == dns.name.from_text(HOST)
    assert question.rdtype == AAAA
    assert question.rdclass == dns.rdataclass.IN


@pytest.mark.parametrize(
    ("host", "qtype", "query_id"),
    [
        (HOST, dns.rdatatype.MX, 1),
        (HOST, A, -1),
        (HOST, A, 0x10000),
        ("a" * 64 + ".test", A, 1),
        (".".join(["abcdefgh"] * 40), A, 1),
    ],
    ids=["not an address type", "negative id", "id too big", "label too long", "name too long"],
)
def test_build_query_rejects(host: str, qtype: int, query_id: int) -> None:
    with pytest.raises(ValueError, match=r"."):
        build_query(host, qtype, query_id)


@given(st.binary(max_size=1024))
def test_parse_answer_only_raises_doh_wire_error_on_arbitrary_bytes(wire: bytes) -> None:
    # Any other exception escapes and fails the test.
    with contextlib.suppress(DohWireError):
        parse_answer(wire, HOST, A, QID)


@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8))
def test_parse_answer_only_raises_doh_wire_error_on_corrupted_answers(
    edits: list[tuple[int, int]],
) -> None:
    # Random bytes rarely get past the header; flipping bytes of a real chained answer
    # reaches the question, record and compression-pointer parsing too.
    wire = bytearray(_cname_chain())
    for position, value in edits:
        wire[position % len(wire)] = value
    try:
        answer = parse_answer(bytes(wire), HOST, A, QID)
    except DohWireError:
        return
    assert answer.addresses or answer.target
    assert answer.ttl >= 0
