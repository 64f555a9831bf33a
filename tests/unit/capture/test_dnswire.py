"""What capture.dnswire promises: DNS answers in, addresses or a drop reason out."""

from __future__ import annotations

import ipaddress
import re
import struct

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.dnswire import (
    DROP_CNAME_LOOP,
    DROP_MALFORMED,
    DROP_NO_ADDRESS,
    DROP_NO_QUESTION,
    DROP_NOT_RESPONSE,
    DROP_NXDOMAIN,
    DROP_OTHER_RCODE,
    DROP_REASONS,
    DROP_REFUSED,
    DROP_SERVFAIL,
    DROP_TCP_PARTIAL,
    DROP_TRUNCATED,
    DROP_UNSUPPORTED_OPCODE,
    DROP_UNSUPPORTED_QCLASS,
    DROP_UNSUPPORTED_QTYPE,
    DnsResponse,
    parse_response,
    parse_tcp_payload,
    split_tcp_messages,
)

SERVICE = "web.shop.svc.cluster.local"

# --- builders -----------------------------------------------------------------


def answer(qname: str, qtype: str, *records: tuple[str, int, str, str], **kw: object) -> bytes:
    """A response as a real server writes it (dnspython compresses names)."""
    query = dns.message.make_query(qname, qtype)
    response = dns.message.make_response(query)
    for owner, ttl, rtype, value in records:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, value))
    wire: bytes = response.to_wire(**kw)
    return wire


def header(flags: int = 0x8180, qd: int = 1, an: int = 0, msg_id: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, 0, 0)


def name(text: str) -> bytes:
    """An uncompressed wire name from dotted text (no escapes)."""
    labels = [label.encode() for label in text.split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def raw_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def question(qname: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def record(owner: bytes, rtype: int, rdata: bytes, ttl: int = 30, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def a(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


QNAME_AT = 12  # the question name always starts right after the header


# --- answers that count -------------------------------------------------------


def test_a_single_answer_for_a_cluster_service() -> None:
    wire = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.96.0.12"))
    msg_id = struct.unpack_from("!H", wire)[0]

    assert parse_response(wire) == DnsResponse(
        qname=SERVICE, qtype="A", answers=("10.96.0.12",), cnames=(), ttl=30, msg_id=msg_id
    )


def test_several_a_answers_keep_answer_order_and_lowest_ttl() -> None:
    wire = (
        header(an=3)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 1, a("10.0.0.3"), ttl=30)
        + record(pointer(QNAME_AT), 1, a("10.0.0.1"), ttl=10)
        + record(pointer(QNAME_AT), 1, a("10.0.0.2"), ttl=30)
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == ("10.0.0.3", "10.0.0.1", "10.0.0.2")
    assert result.ttl == 10
    assert result.msg_id == 0x1234


def test_duplicate_addresses_are_reported_once() -> None:
    wire = (
        header(an=2)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 1, a("10.0.0.1"))
        + record(pointer(QNAME_AT), 1, a("10.0.0.1"))
    )

    assert parse_response(wire) == DnsResponse(SERVICE, "A", ("10.0.0.1",), (), 30, 0x1234)


def test_aaaa_answers_are_written_like_ipaddress() -> None:
    wire = answer(SERVICE, "AAAA", (SERVICE + ".", 5, "AAAA", "FD00:0:0:0::12"))

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert (result.qtype, result.answers, result.ttl) == ("AAAA", ("fd00::12",), 5)


@pytest.mark.parametrize("address", ["::ffff:10.1.2.3", "::10.1.2.3", "::1:0", "2001:db8::1"])
def test_aaaa_text_agrees_with_ipaddress_even_for_embedded_ipv4(address: str) -> None:
    wire = answer(SERVICE, "AAAA", (SERVICE + ".", 5, "AAAA", address))

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == (str(ipaddress.IPv6Address(address)),)


def test_records_of_another_type_than_the_question_are_ignored() -> None:
    wire = (
        header(an=2)
        + question(name(SERVICE), qtype=28)
        + record(pointer(QNAME_AT), 1, a("10.0.0.1"))
        + record(pointer(QNAME_AT), 28, ipaddress.IPv6Address("fd00::1").packed)
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == ("fd00::1",)


def test_question_name_is_lower_case_and_matches_owners_in_any_case() -> None:
    wire = (
        header(an=1)
        + question(name("Web.SHOP.svc.cluster.local"))
        + record(name("web.shop.SVC.cluster.local"), 1, a("10.0.0.1"))
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.qname == SERVICE


def test_bytes_like_inputs_are_accepted() -> None:
    wire = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.96.0.12"))

    assert parse_response(memoryview(wire)) == parse_response(bytearray(wire))
    assert isinstance(parse_response(memoryview(wire)), DnsResponse)


def test_a_ttl_with_the_top_bit_set_counts_as_zero() -> None:
    negative = record(pointer(QNAME_AT), 1, a("10.0.0.1"), ttl=0x80000001)
    wire = header(an=1) + question(name(SERVICE)) + negative

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.ttl == 0


def test_root_question_name_is_a_single_dot() -> None:
    wire = header(an=1) + question(b"\x00") + record(pointer(QNAME_AT), 1, a("192.0.2.1"))

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.qname == "."


# --- CNAME chains ---------------------------------------------------------------


def test_cname_chain_is_followed_to_the_final_addresses() -> None:
    wire = answer(
        "api.example.com",
        "A",
        ("api.example.com.", 300, "CNAME", "api.cdn.example.net."),
        ("api.cdn.example.net.", 60, "CNAME", "edge.cdn.example.net."),
        ("edge.cdn.example.net.", 120, "A", "192.0.2.7"),
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.qname == "api.example.com"
    assert result.cnames == ("api.cdn.example.net", "edge.cdn.example.net")
    assert result.answers == ("192.0.2.7",)
    assert result.ttl == 60


def test_cname_chain_is_followed_whatever_the_record_order() -> None:
    wire = answer(
        "api.example.com",
        "A",
        ("edge.cdn.example.net.", 120, "A", "192.0.2.7"),
        ("api.cdn.example.net.", 60, "CNAME", "edge.cdn.example.net."),
        ("api.example.com.", 300, "CNAME", "api.cdn.example.net."),
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.cnames == ("api.cdn.example.net", "edge.cdn.example.net")


def test_cname_chain_that_does_not_reach_addresses_is_no_address() -> None:
    wire = answer(
        "api.example.com",
        "A",
        ("api.example.com.", 300, "CNAME", "api.cdn.example.net."),
        ("other.example.net.", 120, "A", "192.0.2.7"),
    )

    assert parse_response(wire) == DROP_NO_ADDRESS


def test_addresses_of_qname_are_not_used_when_qname_is_an_alias() -> None:
    # A name with a CNAME has no other data (RFC 1034 3.6.2), so addresses
    # next to it are not the answer: the chain's end is.
    wire = answer(
        "api.example.com",
        "A",
        ("api.example.com.", 300, "CNAME", "edge.example.net."),
        ("api.example.com.", 300, "A", "192.0.2.1"),
        ("edge.example.net.", 30, "A", "192.0.2.2"),
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == ("192.0.2.2",)


def test_a_repeated_cname_for_one_name_is_followed_as_first_given() -> None:
    cname_at = QNAME_AT + len(question(name(SERVICE)))
    wire = (
        header(an=3)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 5, name("first.example"))
        + record(pointer(QNAME_AT), 5, name("second.example"))
        + record(pointer(cname_at + 12), 1, a("192.0.2.1"))
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.cnames == ("first.example",)


def test_cname_loop_is_dropped() -> None:
    wire = answer(
        "a.example.com",
        "A",
        ("a.example.com.", 30, "CNAME", "b.example.com."),
        ("b.example.com.", 30, "CNAME", "a.example.com."),
    )

    assert parse_response(wire) == DROP_CNAME_LOOP


def test_cname_rdata_longer_than_its_name_is_malformed() -> None:
    wire = (
        header(an=1)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 5, name("x.example") + b"\x00\x00")
    )

    assert parse_response(wire) == DROP_MALFORMED


# --- responses that are counted and dropped ---------------------------------------


@pytest.mark.parametrize(
    ("rcode", "reason"),
    [
        (dns.rcode.NXDOMAIN, DROP_NXDOMAIN),
        (dns.rcode.SERVFAIL, DROP_SERVFAIL),
        (dns.rcode.REFUSED, DROP_REFUSED),
        (dns.rcode.NOTIMP, DROP_OTHER_RCODE),
        (dns.rcode.FORMERR, DROP_OTHER_RCODE),
    ],
)
def test_error_rcodes_are_dropped_by_name(rcode: dns.rcode.Rcode, reason: str) -> None:
    response = dns.message.make_response(dns.message.make_query("x.default.svc.cluster.local", "A"))
    response.set_rcode(rcode)

    assert parse_response(response.to_wire()) == reason


def test_a_query_is_not_a_response() -> None:
    wire = dns.message.make_query(SERVICE, "A").to_wire()

    assert parse_response(wire) == DROP_NOT_RESPONSE


def test_truncated_response_is_dropped_before_its_rcode() -> None:
    wire = header(flags=0x8383) + question(name(SERVICE))  # TC and NXDOMAIN

    assert parse_response(wire) == DROP_TRUNCATED


def test_notify_response_is_an_unsupported_opcode() -> None:
    response = dns.message.make_response(dns.message.make_query(SERVICE, "SOA"))
    response.set_opcode(dns.opcode.NOTIFY)

    assert parse_response(response.to_wire()) == DROP_UNSUPPORTED_OPCODE


def test_response_without_question_is_dropped() -> None:
    assert parse_response(header(qd=0)) == DROP_NO_QUESTION


def test_response_with_two_questions_is_malformed() -> None:
    wire = header(qd=2) + question(name(SERVICE)) + question(name(SERVICE), qtype=28)

    assert parse_response(wire) == DROP_MALFORMED


def test_answer_to_another_qtype_is_unsupported() -> None:
    wire = answer(SERVICE, "MX", (SERVICE + ".", 30, "MX", "10 mail.example.com."))

    assert parse_response(wire) == DROP_UNSUPPORTED_QTYPE


def test_question_outside_class_in_is_unsupported() -> None:
    wire = header() + question(name("version.bind"), qtype=1, qclass=3)

    assert parse_response(wire) == DROP_UNSUPPORTED_QCLASS


def test_noerror_without_answers_is_no_address() -> None:
    wire = answer(SERVICE, "AAAA")

    assert parse_response(wire) == DROP_NO_ADDRESS


def test_address_with_wrong_length_is_malformed() -> None:
    five_bytes = record(pointer(QNAME_AT), 1, b"\x0a\x00\x00\x01\x00")
    wire = header(an=1) + question(name(SERVICE)) + five_bytes

    assert parse_response(wire) == DROP_MALFORMED


@pytest.mark.parametrize("data", [b"", b"\x12", header()[:11]])
def test_shorter_than_a_header_is_malformed(data: bytes) -> None:
    assert parse_response(data) == DROP_MALFORMED


def test_every_cut_of_a_valid_message_is_a_drop_or_the_same_answer() -> None:
    wire = answer(
        "api.example.com",
        "A",
        ("api.example.com.", 300, "CNAME", "edge.example.net."),
        ("edge.example.net.", 30, "A", "192.0.2.2"),
        ("edge.example.net.", 30, "A", "192.0.2.3"),
    )
    whole = parse_response(wire)
    assert isinstance(whole, DnsResponse)

    for cut in range(len(wire)):
        result = parse_response(wire[:cut])
        assert result in DROP_REASONS or result == whole, cut


# --- compression pointers and hostile names ----------------------------------------


def test_pointer_to_itself_is_malformed() -> None:
    owner_at = QNAME_AT + len(question(name(SERVICE)))
    wire = header(an=1) + question(name(SERVICE)) + record(pointer(owner_at), 1, a("10.0.0.1"))

    assert parse_response(wire) == DROP_MALFORMED


def test_two_pointers_pointing_at_each_other_are_malformed() -> None:
    first = QNAME_AT + len(question(name(SERVICE)))
    rdata_at, second_owner_at = first + 12, first + 14
    # The CNAME's target points at the next record's owner, which points
    # back at the target: a loop that the backwards-only rule refuses.
    wire = (
        header(an=2)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 5, pointer(second_owner_at))
        + record(pointer(rdata_at), 1, a("10.0.0.1"))
    )

    assert parse_response(wire) == DROP_MALFORMED


def test_forward_pointer_is_malformed() -> None:
    body = question(name(SERVICE))
    target = QNAME_AT + len(body) + 2 + 10 + 4  # just past the record
    wire = header(an=1) + body + record(pointer(target), 1, a("10.0.0.1")) + name("late")

    assert parse_response(wire) == DROP_MALFORMED


@pytest.mark.parametrize("target", [0, 5, 11, 0x3FFF])
def test_pointer_into_the_header_or_past_the_end_is_malformed(target: int) -> None:
    wire = header(an=1) + question(name(SERVICE)) + record(pointer(target), 1, a("10.0.0.1"))

    assert parse_response(wire) == DROP_MALFORMED


def test_pointer_in_the_question_is_malformed() -> None:
    wire = header() + question(b"\x03www" + pointer(QNAME_AT))

    assert parse_response(wire) == DROP_MALFORMED


def test_pointer_chain_longer_than_any_name_is_malformed() -> None:
    # 200 pointers, each to the one before it, hidden in a record's opaque
    # data; the next record's owner name enters the chain at its far end.
    body = question(name(SERVICE))
    chain_at = QNAME_AT + len(body) + 12
    chain = pointer(QNAME_AT) + b"".join(pointer(chain_at + 2 * i) for i in range(199))
    wire = (
        header(an=2)
        + body
        + record(pointer(QNAME_AT), 99, chain)
        + record(pointer(chain_at + len(chain) - 2), 1, a("10.0.0.1"))
    )

    assert parse_response(wire) == DROP_MALFORMED


def test_short_pointer_chain_in_opaque_data_is_followed() -> None:
    body = question(name(SERVICE))
    chain_at = QNAME_AT + len(body) + 12
    chain = pointer(QNAME_AT) + b"".join(pointer(chain_at + 2 * i) for i in range(5))
    wire = (
        header(an=2)
        + body
        + record(pointer(QNAME_AT), 99, chain)
        + record(pointer(chain_at + len(chain) - 2), 1, a("10.0.0.1"))
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == ("10.0.0.1",)


def test_pointer_to_a_pointer_is_followed() -> None:
    body = question(name(SERVICE))
    owner_at = QNAME_AT + len(body)
    wire = (
        header(an=2)
        + body
        + record(pointer(QNAME_AT), 1, a("10.0.0.1"))
        + record(pointer(owner_at), 1, a("10.0.0.2"))
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.answers == ("10.0.0.1", "10.0.0.2")


def test_name_of_255_octets_is_read_and_256_is_malformed() -> None:
    longest = raw_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61)  # 255 octets
    too_long = raw_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62)
    assert len(longest) == 255

    ok = parse_response(header(an=1) + question(longest) + record(pointer(12), 1, a("10.0.0.1")))
    bad = parse_response(header(an=1) + question(too_long) + record(pointer(12), 1, a("10.0.0.1")))

    assert isinstance(ok, DnsResponse)
    assert ok.qname == ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert bad == DROP_MALFORMED


def test_compressed_name_over_255_octets_is_malformed() -> None:
    long_question = raw_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 60)  # 254 octets
    owner = b"\x05extra" + pointer(QNAME_AT)  # 6 more octets through a pointer
    wire = header(an=1) + question(long_question) + record(owner, 1, a("10.0.0.1"))

    assert parse_response(wire) == DROP_MALFORMED


@pytest.mark.parametrize("length_byte", [0x40, 0x7F, 0x80, 0xBF])
def test_label_lengths_over_63_and_obsolete_label_types_are_malformed(length_byte: int) -> None:
    wire = header() + question(bytes([length_byte]) + b"x" * 70 + b"\x00")

    assert parse_response(wire) == DROP_MALFORMED


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        ((b"a.b", b"example"), "a\\.b.example"),
        ((b"with space", b"example"), "with\\032space.example"),
        ((b"new\nline", b"example"), "new\\010line.example"),
        ((b'quote"d', b"it's"), "quote\\034d.it\\039s"),
        ((b"back\\slash",), "back\\\\slash"),
        ((b"caf\xc3\xa9", b"example"), "caf\\195\\169.example"),
        ((b"\x00\x7f\xff",), "\\000\\127\\255"),
        ((b"UPPER", b"_srv", b"*"), "upper._srv.*"),
        ((b"x" * 50, b"COM"), "x" * 50 + ".com"),
    ],
)
def test_hostile_labels_are_escaped_like_master_files(labels: tuple[bytes, ...], text: str) -> None:
    qname = raw_name(*labels)
    wire = header(an=1) + question(qname) + record(pointer(QNAME_AT), 1, a("10.0.0.1"))

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.qname == text
    assert dns.name.from_text(text + ".") == dns.name.Name([*labels, b""])


def test_hostile_cname_targets_are_escaped_too() -> None:
    target = raw_name(b'evil\r\n"name', b"example")
    wire = (
        header(an=2)
        + question(name(SERVICE))
        + record(pointer(QNAME_AT), 5, target)
        + record(pointer(QNAME_AT + len(question(name(SERVICE))) + 12), 1, a("10.0.0.1"))
    )

    result = parse_response(wire)

    assert isinstance(result, DnsResponse)
    assert result.cnames == ("evil\\013\\010\\034name.example",)


# --- DNS over TCP ----------------------------------------------------------------


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def test_tcp_segment_with_three_messages_yields_each() -> None:
    first = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.0.0.1"))
    second = answer(SERVICE, "AAAA", (SERVICE + ".", 30, "AAAA", "fd00::1"))
    third = answer("x.default.svc.cluster.local", "A")

    items = list(split_tcp_messages(framed(first) + framed(second) + framed(third)))

    assert items == [first, second, third]


def test_tcp_segment_ending_inside_a_message_reports_the_partial_tail() -> None:
    first = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.0.0.1"))
    second = answer(SERVICE, "AAAA", (SERVICE + ".", 30, "AAAA", "fd00::1"))

    items = list(split_tcp_messages(framed(first) + framed(second) + framed(first)[:20]))

    assert items == [first, second, DROP_TCP_PARTIAL]


def test_tcp_segment_ending_inside_a_length_prefix_is_partial() -> None:
    first = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.0.0.1"))

    assert list(split_tcp_messages(framed(first) + b"\x00")) == [first, DROP_TCP_PARTIAL]


def test_empty_tcp_payload_yields_nothing() -> None:
    assert list(split_tcp_messages(b"")) == []


def test_parse_tcp_payload_parses_each_message_and_keeps_drops() -> None:
    good = answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.0.0.1"))
    nxdomain = dns.message.make_response(dns.message.make_query("x.example", "A"))
    nxdomain.set_rcode(dns.rcode.NXDOMAIN)

    results = parse_tcp_payload(framed(good) + framed(nxdomain.to_wire()) + b"\x01\x00abc")

    assert results[0] == parse_response(good)
    assert results[1:] == [DROP_NXDOMAIN, DROP_TCP_PARTIAL]


# --- properties ------------------------------------------------------------------

SAFE_TEXT = re.compile(r"[a-z0-9_*.\\-]+")

# Random bytes, and labels from an alphabet of near-misses for the fast path
# (upper case, dots, bytes just below "*", backslashes), some of them long.
TRICKY = b'aZ09-_*.\\)(\x01\x29\x2a\x2e\x3f\x7f\x80\xff \n"'
label_bytes = st.one_of(
    st.binary(min_size=1, max_size=20),
    st.lists(st.sampled_from(TRICKY), min_size=1, max_size=63).map(bytes),
    st.lists(st.sampled_from(b"abcXYZ019-_*"), min_size=1, max_size=63).map(bytes),
)
hostile_names = st.lists(label_bytes, min_size=1, max_size=3)


def realistic_messages() -> list[bytes]:
    return [
        answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.96.0.12")),
        answer(SERVICE, "AAAA", (SERVICE + ".", 30, "AAAA", "fd00::12")),
        answer(
            "api.example.com",
            "A",
            ("api.example.com.", 300, "CNAME", "api.cdn.example.net."),
            ("api.cdn.example.net.", 60, "CNAME", "edge.cdn.example.net."),
            ("edge.cdn.example.net.", 20, "A", "192.0.2.1"),
            ("edge.cdn.example.net.", 20, "A", "192.0.2.2"),
        ),
    ]


def is_result(value: object) -> bool:
    return isinstance(value, DnsResponse) or value in DROP_REASONS


@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert is_result(parse_response(data))


@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_header_and_question_never_raise(tail: bytes) -> None:
    assert is_result(parse_response(header(an=3) + question(name(SERVICE)) + tail))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(realistic_messages()),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_valid_messages_never_raise(wire: bytes, edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(wire)
    for offset, value in edits:
        mutated[offset % len(mutated)] = value

    assert is_result(parse_response(bytes(mutated)))


@given(st.binary(max_size=400))
def test_tcp_split_never_raises_and_only_cuts_at_prefixes(payload: bytes) -> None:
    rebuilt = b""
    for item in split_tcp_messages(payload):
        if isinstance(item, bytes):
            rebuilt += framed(item)
        else:
            assert item == DROP_TCP_PARTIAL
    assert payload.startswith(rebuilt)
    for result in parse_tcp_payload(payload):
        assert is_result(result)


@settings(deadline=None)
@given(hostile_names, hostile_names)
def test_any_name_becomes_safe_text_that_reads_back_to_the_same_name(
    qname_labels: list[bytes], target_labels: list[bytes]
) -> None:
    qname = dns.name.Name([*qname_labels, b""])
    target = dns.name.Name([*target_labels, b""])
    query = dns.message.make_query(qname, "A")
    response = dns.message.make_response(query)
    if qname != target:
        response.answer.append(dns.rrset.from_text(qname, 30, "IN", "CNAME", target.to_text()))
    response.answer.append(dns.rrset.from_text(target, 30, "IN", "A", "10.0.0.1"))

    result = parse_response(response.to_wire())

    assert isinstance(result, DnsResponse)
    assert SAFE_TEXT.fullmatch(result.qname)
    assert dns.name.from_text(result.qname + ".") == qname
    assert [dns.name.from_text(text + ".") for text in result.cnames] == (
        [target] if qname != target else []
    )


@settings(deadline=None)
@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True), min_size=1, max_size=3),
    st.integers(0, 3),
    st.lists(st.integers(1, 2**32 - 2), min_size=1, max_size=4, unique=True),
    st.sampled_from(["cluster.local", "example.com", "svc.cluster.local"]),
)
def test_chains_agree_with_dnspython(
    labels: list[str], hops: int, addresses: list[int], domain: str
) -> None:
    qname = ".".join(labels) + "." + domain
    chain = [f"_c{i}.{labels[-1]}.{domain}" for i in range(hops)]  # "_" keeps them apart
    records = [
        (owner + ".", 60 + i, "CNAME", target + ".")
        for i, (owner, target) in enumerate(zip([qname, *chain], chain, strict=False))
    ]
    final = chain[-1] if chain else qname
    ips = [str(ipaddress.IPv4Address(value)) for value in addresses]
    records += [(final + ".", 30, "A", ip) for ip in ips]
    wire = answer(qname, "A", *records)

    result = parse_response(wire)
    reference = dns.message.from_wire(wire)

    assert isinstance(result, DnsResponse)
    assert result.cnames == tuple(chain)
    assert sorted(result.answers) == sorted(str(r) for r in reference.answer[-1])
    assert result.ttl == min(rrset.ttl for rrset in reference.answer)
