"""capture/_dnsfast.c reads the usual DNS response as the Python parser does, or not at all.

The C path answers only the plain case (one A or AAAA question whose labels need
no escapes, every answer an address of that type for the question name itself)
and returns None for everything else, which the Python parser, the reference,
then decides. So whenever it answers, its answer is the Python parser's.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from helpers.dnscorpus import build_corpus
from helpers.dnsmessages import (
    QNAME_AT,
    SERVICE,
    a,
    header,
    name,
    pointer,
    question,
    raw_name,
    realistic_messages,
    record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.dnswire import (
    DROP_MALFORMED,
    DROP_NO_ADDRESS,
    DROP_NOT_RESPONSE,
    DROP_NXDOMAIN,
    DROP_TRUNCATED,
    DROP_UNSUPPORTED_QCLASS,
    DROP_UNSUPPORTED_QTYPE,
    NATIVE_PARSE,
    DnsResponse,
    parse_response,
)

NOT_BUILT = "capture/_dnsfast.c was not built: `pip install -e .` needs gcc"
pytestmark = pytest.mark.skipif(not NATIVE_PARSE, reason=NOT_BUILT)

TYPE_A, TYPE_AAAA, TYPE_CNAME = 1, 28, 5
MSG_ID = 0x1234  # helpers.dnsmessages.header's


def in_c(wire: bytes) -> DnsResponse | None:
    """What the C path makes of ``wire``: a response, or None for Python to decide."""
    from capture import _dnsfast

    return _dnsfast.parse(wire)


def in_python(wire: bytes) -> DnsResponse | str:
    return parse_response(wire, native=False)


def assert_agrees(wire: bytes) -> None:
    """The C path either hands ``wire`` back, or reads it as Python does."""
    fast = in_c(wire)
    if fast is not None:
        slow = in_python(wire)
        assert isinstance(slow, DnsResponse)
        assert fast == slow
    assert parse_response(wire) == in_python(wire)


def plain_message(
    labels: list[bytes],
    qtype: int,
    answers: list[tuple[bytes, int]],
    msg_id: int = MSG_ID,
    flags: int = 0x8180,
    trailing: bytes = b"",
) -> bytes:
    """A response whose every answer is an address for the question name, by pointer."""
    records = [record(pointer(QNAME_AT), qtype, rdata, ttl=ttl) for rdata, ttl in answers]
    wire: bytes = (
        header(flags=flags, an=len(answers), msg_id=msg_id)
        + question(raw_name(*labels), qtype)
        + b"".join(records)
        + trailing
    )
    return wire


# --- generated plain responses --------------------------------------------------

# Labels of 1 to 41 octets (longer ones go to Python), in any case; six of them
# at most fill 253 octets of the 255 a name may have.
labels = st.lists(
    st.text(alphabet="abcdxyzABCDXYZ0189_*-", min_size=1, max_size=41).map(str.encode),
    min_size=1,
    max_size=6,
)
ttls = st.one_of(st.integers(0, 2**32 - 1), st.integers(2**31 - 3, 2**31 + 3))
# Response flags that may vary: AA, RD, RA, Z, AD and CD.
free_flags = st.integers(0, 0xFFFF).map(lambda bits: 0x8000 | (bits & 0x05F0))


def _no_dotted_tail(packed: bytes) -> bool:
    # glibc writes IPv4-mapped and -compatible addresses with a dotted tail; Python
    # writes those as ipaddress does, and the C path hands them back.
    return "." not in socket.inet_ntop(socket.AF_INET6, packed)


ipv4s = st.binary(min_size=4, max_size=4)
ipv6s = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.sampled_from(["::", "::1", "1::", "fd00::12", "2001:db8::1:0:0:1", "1:0:0:1::"]).map(
        lambda text: ipaddress.IPv6Address(text).packed
    ),
    st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF]), min_size=8, max_size=8).map(
        lambda words: struct.pack("!8H", *words)
    ),
).filter(_no_dotted_tail)


@st.composite
def plain_responses(draw: st.DrawFn) -> tuple[bytes, DnsResponse]:
    """A plain response, and what it says."""
    qtype = draw(st.sampled_from([TYPE_A, TYPE_AAAA]))
    pool = draw(st.lists(ipv4s if qtype == TYPE_A else ipv6s, min_size=1, max_size=3))
    answers = draw(st.lists(st.tuples(st.sampled_from(pool), ttls), min_size=1, max_size=5))
    qname = draw(labels)
    msg_id = draw(st.integers(0, 0xFFFF))
    wire = plain_message(
        qname,
        qtype,
        answers,
        msg_id=msg_id,
        flags=draw(free_flags),
        trailing=draw(st.binary(max_size=40)),  # authority and additional: never read
    )
    said = DnsResponse(
        qname=b".".join(qname).decode().lower(),
        qtype="A" if qtype == TYPE_A else "AAAA",
        answers=tuple(dict.fromkeys(str(ipaddress.ip_address(rdata)) for rdata, _ in answers)),
        cnames=(),
        ttl=min(ttl if ttl < 2**31 else 0 for _, ttl in answers),
        msg_id=msg_id,
    )
    return wire, said


@settings(max_examples=500)
@given(plain_responses())
def test_a_plain_response_is_read_in_c_as_python_reads_it(case: tuple[bytes, DnsResponse]) -> None:
    wire, said = case

    assert in_c(wire) == said
    assert in_python(wire) == said
    assert parse_response(wire) == said


# --- anything else: the C path answers as Python does, or hands it back ----------


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_random_bytes_are_read_alike_or_handed_back(data: bytes) -> None:
    assert_agrees(data)


@settings(max_examples=300)
@given(st.sampled_from([TYPE_A, TYPE_AAAA]), st.binary(max_size=300))
def test_random_answers_after_a_valid_question_are_read_alike_or_handed_back(
    qtype: int, tail: bytes
) -> None:
    assert_agrees(header(an=3) + question(name(SERVICE), qtype) + tail)


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
        st.integers(0, 600),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


def edited(wire: bytes, changes: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(wire)
    for kind, offset, value in changes:
        at = offset % (len(data) + 1)
        if kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "truncate":
            del data[at:]
        elif at < len(data) and kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif at < len(data) and kind == "set":
            data[at] = value
        elif at < len(data):
            del data[at]
    return bytes(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(plain_responses().map(lambda case: case[0]), st.sampled_from(realistic_messages())),
    edits,
)
def test_mutated_responses_are_read_alike_or_handed_back(
    wire: bytes, changes: list[tuple[str, int, int]]
) -> None:
    assert_agrees(edited(wire, changes))


def test_every_cut_of_a_plain_response_is_handed_back() -> None:
    wire = plain_message([b"web", b"shop"], TYPE_A, [(a("10.0.0.1"), 30), (a("10.0.0.2"), 20)])

    for end in range(len(wire)):
        assert in_c(wire[:end]) is None
        assert parse_response(wire[:end]) == in_python(wire[:end])


# --- what the C path leaves to Python ----------------------------------------------

A_RECORD = record(pointer(QNAME_AT), TYPE_A, a("10.0.0.1"))
ONE_ANSWER = header(an=1) + question(name(SERVICE))


def response(
    qname: str, *answers: str, qtype: str = "A", cnames: tuple[str, ...] = ()
) -> DnsResponse:
    """What the Python parser reads from these hand-made messages (TTL 30, MSG_ID)."""
    return DnsResponse(qname, qtype, answers, cnames, ttl=30, msg_id=MSG_ID)


HANDED_BACK: dict[str, tuple[bytes, DnsResponse | str]] = {
    "a CNAME answer": (
        header(an=2)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), TYPE_CNAME, name("x.example"))
        + record(name("x.example"), TYPE_A, a("10.0.0.1")),
        response(SERVICE, "10.0.0.1", cnames=("x.example",)),
    ),
    "a name with an escaped byte": (
        header(an=1) + question(raw_name(b"we b", b"example")) + A_RECORD,
        response("we\\032b.example", "10.0.0.1"),
    ),
    "a label of 50 octets": (
        header(an=1) + question(raw_name(b"x" * 50, b"example")) + A_RECORD,
        response("x" * 50 + ".example", "10.0.0.1"),
    ),
    "the root name": (
        header(an=1) + question(b"\x00") + A_RECORD,
        response(".", "10.0.0.1"),
    ),
    "NXDOMAIN": (header(flags=0x8183, an=1) + question(name(SERVICE)) + A_RECORD, DROP_NXDOMAIN),
    "truncated": (header(flags=0x8380, an=1) + question(name(SERVICE)) + A_RECORD, DROP_TRUNCATED),
    "an IPv4-mapped AAAA": (
        header(an=1)
        + question(name(SERVICE), TYPE_AAAA)
        + record(pointer(QNAME_AT), TYPE_AAAA, ipaddress.IPv6Address("::ffff:1.2.3.4").packed),
        response(SERVICE, str(ipaddress.IPv6Address("::ffff:1.2.3.4")), qtype="AAAA"),
    ),
    "no answers": (header(an=0) + question(name(SERVICE)), DROP_NO_ADDRESS),
    "a query": (header(flags=0x0100, an=1) + question(name(SERVICE)) + A_RECORD, DROP_NOT_RESPONSE),
    "a question of class CH": (
        header(an=1) + question(name(SERVICE), qclass=3) + A_RECORD,
        DROP_UNSUPPORTED_QCLASS,
    ),
    "a question of type TXT": (
        header(an=1) + question(name(SERVICE), qtype=16) + record(pointer(QNAME_AT), 16, b"\x01x"),
        DROP_UNSUPPORTED_QTYPE,
    ),
    "two questions": (
        header(qd=2, an=1) + question(name(SERVICE)) + question(name(SERVICE)) + A_RECORD,
        DROP_MALFORMED,
    ),
    "an answer of another class after the addresses": (
        header(an=2)
        + question(name(SERVICE))
        + A_RECORD
        + record(pointer(QNAME_AT), TYPE_A, a("10.0.0.2"), rclass=3),
        response(SERVICE, "10.0.0.1"),
    ),
    "an owner written out instead of a pointer": (
        header(an=1) + question(name(SERVICE)) + record(name(SERVICE), TYPE_A, a("10.0.0.1")),
        response(SERVICE, "10.0.0.1"),
    ),
    "an address of five octets": (
        ONE_ANSWER + record(pointer(QNAME_AT), TYPE_A, a("10.0.0.1") + b"\x00"),
        DROP_MALFORMED,
    ),
    "fewer answers than the header says": (
        header(an=2) + question(name(SERVICE)) + A_RECORD,
        DROP_MALFORMED,
    ),
    "a name of 256 octets": (
        header(an=1) + question(raw_name(*[b"x" * 41] * 6, b"xy")) + A_RECORD,
        DROP_MALFORMED,
    ),
}


@pytest.mark.parametrize("case", HANDED_BACK.values(), ids=HANDED_BACK.keys())
def test_anything_but_the_plain_case_is_left_to_python(
    case: tuple[bytes, DnsResponse | str],
) -> None:
    wire, python_reads = case

    assert in_c(wire) is None
    assert parse_response(wire) == in_python(wire) == python_reads


def test_every_octet_of_an_ipv4_address_is_written_as_python_writes_it() -> None:
    for octet in range(256):
        for at in range(4):
            packed = bytes(octet if n == at else n * 50 for n in range(4))
            found = in_c(plain_message([b"db"], TYPE_A, [(packed, 30)]))
            assert found is not None
            assert found.answers == (str(ipaddress.IPv4Address(packed)),)


def test_a_name_of_255_octets_is_read_in_c() -> None:
    wire = header(an=1) + question(raw_name(*[b"x" * 41] * 6, b"y")) + A_RECORD

    assert in_c(wire) == in_python(wire) == response(".".join(["x" * 41] * 6 + ["y"]), "10.0.0.1")


def test_the_c_path_takes_bytes_only_and_parse_response_gives_it_bytes() -> None:
    wire = ONE_ANSWER + A_RECORD

    with pytest.raises(TypeError):
        in_c(bytearray(wire))  # type: ignore[arg-type]
    assert parse_response(bytearray(wire)) == parse_response(memoryview(wire)) == in_c(wire)


# --- the benchmark's corpus ----------------------------------------------------------


def test_the_benchmark_corpus_reads_the_same_with_and_without_the_c_path() -> None:
    for wire in build_corpus(400):
        slow = in_python(wire)
        assert isinstance(slow, DnsResponse)
        assert parse_response(wire) == slow
        # Every answer without a CNAME chain is read in C; the chains are left to Python.
        assert (in_c(wire) is not None) == (slow.cnames == ())
