"""RFC 8484 DNS wire messages for the DoH resolver: built and checked, no I/O.

Everything here treats the answer as hostile input: a DoH server, a proxy in front of
it or a bug can hand back anything, and every way an answer can be wrong ends in a
``DohWireError`` carrying one of a few closed reasons (they become metric labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from t3probe.reasons import DnsFailure

# DNS messages over TCP/HTTP cannot exceed 65535 bytes; anything larger is not DNS.
MAX_WIRE_BYTES = 64 * 1024
# Resolvers give up on chains far shorter than this; a longer one is a loop or abuse.
MAX_CNAME_DEPTH = 8

_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})


class DohWireError(Exception):
    """An answer that yields no address, with the reason the failure sink records."""

    def __init__(self, reason: DnsFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    addresses: tuple[str, ...]
    # The smallest TTL along the CNAME chain: the answer is only as fresh as its
    # shortest-lived link.
    ttl: float
    # Set when the chain ends at a name this answer holds no records for (no
    # addresses then): a stub resolver asks for that name next.
    target: str | None = None
    # The CNAME owners followed, so a chain spread over several answers is bounded
    # and its loops are seen.
    aliases: tuple[str, ...] = ()


def build_query(host: str, qtype: int, query_id: int) -> bytes:
    """Encode a recursive query for ``host``.

    RFC 8484 recommends id 0 so that HTTP caches can share GET answers. We POST (which
    HTTP caches do not store anyway) and use a random id the answer must echo, so an
    answer meant for another query (a confused proxy, a mixed-up connection) is
    rejected instead of trusted. Raises ``ValueError`` for a name DNS cannot encode.
    """
    if qtype not in _ADDRESS_TYPES:
        raise ValueError(f"only A and AAAA queries are supported, not {qtype}")
    if not 0 <= query_id <= 0xFFFF:
        raise ValueError(f"query id {query_id} does not fit in 16 bits")
    try:
        name = dns.name.from_text(host)
    except dns.exception.DNSException as err:
        raise ValueError(f"{host!r} is not a valid DNS name: {err}") from err
    query = dns.message.make_query(name, dns.rdatatype.RdataType.make(qtype))
    query.id = query_id
    return query.to_wire()


def parse_answer(wire: bytes, host: str, qtype: int, query_id: int) -> Answer:
    """Check that ``wire`` answers our query and return its addresses.

    Follows CNAME chains inside the answer section. A chain whose target has no records
    in this answer yields an ``Answer`` with no addresses and that ``target``: many
    servers (unbound's local data, dnsdist's SpoofCNAMEAction) answer only the link
    they hold, and the caller asks again for the target.
    """
    if len(wire) > MAX_WIRE_BYTES:
        raise DohWireError(
            DnsFailure.MALFORMED, f"answer of {len(wire)} bytes exceeds {MAX_WIRE_BYTES}"
        )
    message = _decode(wire)
    _check_header(message, query_id)
    qname = _check_question(message, host, qtype)
    _check_rcode(message, host)
    return _follow_chain(message, qname, qtype, host)


def _decode(wire: bytes) -> dns.message.Message:
    try:
        return dns.message.from_wire(wire)
    except dns.message.Truncated as err:
        raise DohWireError(DnsFailure.MALFORMED, "truncated answer (TC bit)") from err
    # dnspython raises a wide, undocumented range of exceptions on hostile bytes
    # (FormError, ValueError, UnicodeError, struct.error, ...); all mean "not DNS".
    except Exception as err:
        raise DohWireError(
            DnsFailure.MALFORMED, f"undecodable answer: {type(err).__name__}"
        ) from err


def _check_header(message: dns.message.Message, query_id: int) -> None:
    if message.id != query_id:
        raise DohWireError(
            DnsFailure.MALFORMED, f"answer id {message.id} does not match query {query_id}"
        )
    if not message.flags & dns.flags.QR:
        raise DohWireError(DnsFailure.MALFORMED, "message is a query, not a response")
    if message.opcode() != dns.opcode.QUERY:
        raise DohWireError(DnsFailure.MALFORMED, f"unexpected opcode {message.opcode()}")
    # Over HTTP nothing forces truncation, so TC means a broken or hostile server and
    # the partial answer cannot be trusted.
    if message.flags & dns.flags.TC:
        raise DohWireError(DnsFailure.MALFORMED, "truncated answer (TC bit)")


def _check_question(message: dns.message.Message, host: str, qtype: int) -> dns.name.Name:
    try:
        qname = dns.name.from_text(host)
    except dns.exception.DNSException as err:
        raise DohWireError(DnsFailure.MALFORMED, f"{host!r} is not a valid DNS name") from err
    if len(message.question) != 1:
        raise DohWireError(DnsFailure.MALFORMED, f"{len(message.question)} questions in answer")
    question = message.question[0]
    # dnspython compares names case-insensitively, which tolerates servers that echo
    # the question with different letter case.
    if question.name != qname or question.rdtype != qtype or question.rdclass != dns.rdataclass.IN:
        raise DohWireError(DnsFailure.MALFORMED, "answer is for a different question")
    return qname


def _check_rcode(message: dns.message.Message, host: str) -> None:
    rcode = message.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    if rcode == dns.rcode.NXDOMAIN:
        raise DohWireError(DnsFailure.NXDOMAIN, f"{host} does not exist")
    # SERVFAIL, REFUSED, and the rarer codes (FORMERR, NOTIMP, ...) all mean this server
    # could not answer, not that the name is missing.
    raise DohWireError(
        DnsFailure.SERVFAIL, f"server answered {dns.rcode.to_text(rcode)} for {host}"
    )


def _follow_chain(
    message: dns.message.Message, qname: dns.name.Name, qtype: int, host: str
) -> Answer:
    name = qname
    ttls: list[int] = []
    aliases: list[str] = []
    for _ in range(MAX_CNAME_DEPTH + 1):
        rrset = _find(message, name, qtype)
        if rrset is not None and len(rrset) > 0:
            ttls.append(rrset.ttl)
            addresses = tuple(dict.fromkeys(str(rdata.address) for rdata in rrset))
            return Answer(addresses, float(min(ttls)), aliases=tuple(aliases))
        cname = _find(message, name, dns.rdatatype.CNAME)
        if cname is None or len(cname) == 0:
            if aliases:
                target = name.to_text(omit_final_dot=True)
                return Answer((), float(min(ttls)), target=target, aliases=tuple(aliases))
            raise DohWireError(DnsFailure.EMPTY, f"no address records for {host}")
        ttls.append(cname.ttl)
        aliases.append(name.to_text(omit_final_dot=True).lower())
        name = next(iter(cname)).target
    raise DohWireError(
        DnsFailure.MALFORMED, f"CNAME chain for {host} longer than {MAX_CNAME_DEPTH}"
    )


def _find(message: dns.message.Message, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
    return message.get_rrset(
        message.answer, name, dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype)
    )
