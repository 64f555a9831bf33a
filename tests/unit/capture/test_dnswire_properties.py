"""capture.dnswire under random and hostile input: it never raises, and agrees with dnspython."""

from __future__ import annotations

import ipaddress
import re

import dns.message
import dns.name
import dns.rrset
from helpers.dnsmessages import (
    SERVICE,
    answer,
    header,
    name,
    pointer,
    question,
    realistic_messages,
    record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.dnswire import (
    DROP_REASONS,
    DnsResponse,
    parse_response,
)

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


@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=6
    ),
    st.sampled_from([SERVICE, "api.example.com", ""]),
)
def test_plain_answers_read_alike_in_one_pass_and_through_the_general_loop(
    records: list[tuple[int, int]], qname: str
) -> None:
    # Address records for the question name itself are read in one pass; a record of
    # another class at the end (ignored either way) sends them through the general loop.
    qname_wire = name(qname) if qname else b"\x00"
    plain = b"".join(
        record(pointer(12), 1, address.to_bytes(4, "big"), ttl=ttl) for address, ttl in records
    )
    other_class = record(pointer(12), 1, bytes(4), rclass=3)
    one_pass = header(an=len(records)) + question(qname_wire) + plain
    general = header(an=len(records) + 1) + question(qname_wire) + plain + other_class

    assert parse_response(one_pass) == parse_response(general)
    assert isinstance(parse_response(one_pass), DnsResponse)
