"""What capture.dnswire promises of one message: a DNS answer in, addresses or a drop reason out."""

from __future__ import annotations

import ipaddress
import struct

import dns.message
import dns.opcode
import dns.rcode
import pytest
from helpers.dnsmessages import (
    QNAME_AT,
    SERVICE,
    a,
    answer,
    header,
    name,
    pointer,
    question,
    record,
)

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
    DROP_TRUNCATED,
    DROP_UNSUPPORTED_OPCODE,
    DROP_UNSUPPORTED_QCLASS,
    DROP_UNSUPPORTED_QTYPE,
    DnsResponse,
    parse_response,
)

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
