"""capture.dnswire and names: compression pointers followed or refused, hostile labels escaped."""

from __future__ import annotations

import dns.name
import pytest
from helpers.dnsmessages import (
    QNAME_AT,
    SERVICE,
    a,
    header,
    name,
    pointer,
    question,
    raw_name,
    record,
)

from capture.dnswire import DROP_MALFORMED, DnsResponse, parse_response


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
