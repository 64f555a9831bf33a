"""capture.dnswire over TCP: length-prefixed messages split, a partial tail reported."""

from __future__ import annotations

import dns.message
import dns.rcode
from dnsmessages import SERVICE, answer, framed

from capture.dnswire import (
    DROP_NXDOMAIN,
    DROP_TCP_PARTIAL,
    parse_response,
    parse_tcp_payload,
    split_tcp_messages,
)


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
