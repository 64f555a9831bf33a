"""Netlink datagrams in: every conntrack message read, bad input counted, never raised.

Events are real ``ctnetlink`` messages (:mod:`helpers.ctevents`), cut, mangled
and mixed with random bytes.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

import pytest
from helpers.ctevents import (
    ANSWERED,
    BACKEND,
    CLIENT,
    CT_NEW,
    FROM_BACKEND,
    SYN_SENT,
    VIA_SERVICE,
    balanced,
    connection,
    direction,
    encode,
    event,
    tracker,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from capture.ctevent import (
    DROP_MISSING_STATUS,
    DROP_MISSING_TUPLE,
    DROP_NOT_CONNTRACK,
    DROP_ODD_FAMILY,
    DROP_TRUNCATED,
    DROP_UNDECODABLE,
    FlowEvent,
)
from capture.ctflows import (
    DROP_ANSWERED_BEFORE,
    DROP_AWAITING_ANSWER,
)
from capture.ctnetlink import event_from_message, parse_datagram

# --- netlink datagrams --------------------------------------------------------------


def test_a_datagram_may_hold_several_messages() -> None:
    t, stage = tracker()
    t.add_datagram(b"".join(connection()), 100.0)
    assert len(t.flush(now=101.0)) == 1
    assert stage.seen == 3 and stage.dropped == {DROP_AWAITING_ANSWER: 1, DROP_ANSWERED_BEFORE: 1}


def test_parse_gives_the_kernel_fields_of_each_event() -> None:
    (new, update) = parse_datagram(b"".join(connection(ct_id=77)[:2]))
    assert new == FlowEvent("new", 77, SYN_SENT, VIA_SERVICE, FROM_BACKEND)
    assert isinstance(update, FlowEvent) and update.kind == "update" and update.answered
    (destroy,) = parse_datagram(event("destroy", VIA_SERVICE, FROM_BACKEND))
    assert isinstance(destroy, FlowEvent) and destroy.kind == "destroy" and destroy.natted


def test_a_udp_event_reads_the_same_from_its_bytes_and_through_pyroute2() -> None:
    data = event("new", VIA_SERVICE, FROM_BACKEND, status=0, proto=socket.IPPROTO_UDP)
    (fast,) = parse_datagram(data)
    message = nfct_msg(data)
    message.decode()
    assert fast == event_from_message(message)
    assert fast == FlowEvent("new", 1, 0, VIA_SERVICE, FROM_BACKEND, "udp")


@pytest.mark.parametrize("kind", ["update", "destroy"])
def test_a_tcp_state_and_byte_counts_read_the_same_from_bytes_and_through_pyroute2(
    kind: str,
) -> None:
    data = event(kind, VIA_SERVICE, FROM_BACKEND, tcp_state=7, counted=(370, 1268))
    (fast,) = parse_datagram(data)
    message = nfct_msg(data)
    message.decode()
    assert fast == event_from_message(message)
    assert isinstance(fast, FlowEvent) and (fast.tcp_state, fast.bytes) == (7, (370, 1268))


def test_a_truncated_datagram_keeps_its_whole_messages(caplog: pytest.LogCaptureFixture) -> None:
    whole = b"".join(connection())
    t, stage = tracker()
    with caplog.at_level(logging.WARNING, logger="capture.ctflows"):
        t.add_datagram(whole[:-30], 100.0)  # the last message is cut short
        t.add_datagram(whole + b"\x00" * 8, 100.0)  # bytes no message header covers
        t.add_datagram(b"\x01\x02", 100.0)
    assert len(t.flush(now=101.0)) == 1
    assert stage.dropped[DROP_TRUNCATED] == 3 and balanced(stage)
    assert [r.getMessage() for r in caplog.records if r.name == "capture.ctflows"] == [
        "skipped a conntrack message (truncated); further ones are only counted"
    ]


def without(name: str, attrs: list[list[Any]]) -> list[list[Any]]:
    return [attr for attr in attrs if attr[0] != name]


BASE_ATTRS: list[list[Any]] = [
    ["CTA_TUPLE_ORIG", direction(*VIA_SERVICE)],
    ["CTA_TUPLE_REPLY", direction(*FROM_BACKEND)],
    ["CTA_ID", 1],
    ["CTA_STATUS", ANSWERED],
]
NO_PORTS = {
    "attrs": [
        ["CTA_TUPLE_IP", direction(*VIA_SERVICE)["attrs"][0][1]],
        ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", 6]]}],
    ]
}


@pytest.mark.parametrize(
    ("attrs", "msg_type", "family", "reason"),
    [
        (without("CTA_TUPLE_REPLY", BASE_ATTRS), CT_NEW, socket.AF_INET, DROP_MISSING_TUPLE),
        (without("CTA_TUPLE_ORIG", BASE_ATTRS), CT_NEW, socket.AF_INET, DROP_MISSING_TUPLE),
        (
            [["CTA_TUPLE_ORIG", NO_PORTS], *BASE_ATTRS[1:]],
            CT_NEW,
            socket.AF_INET,
            DROP_MISSING_TUPLE,
        ),
        (without("CTA_STATUS", BASE_ATTRS), CT_NEW, socket.AF_INET, DROP_MISSING_STATUS),
        (BASE_ATTRS, CT_NEW, socket.AF_INET6, DROP_ODD_FAMILY),  # IPv4 tuples, IPv6 message
        (BASE_ATTRS, CT_NEW, socket.AF_BRIDGE, DROP_ODD_FAMILY),
        (BASE_ATTRS, 0x105, socket.AF_INET, DROP_NOT_CONNTRACK),  # a statistics reply
        (BASE_ATTRS, 0x200, socket.AF_INET, DROP_NOT_CONNTRACK),  # an expectation event
    ],
    ids=[
        "no-reply",
        "no-orig",
        "no-ports",
        "no-status",
        "v4-in-v6",
        "bridge",
        "stats",
        "expectation",
    ],
)
def test_bad_messages_are_counted_with_their_reason_and_never_raise(
    attrs: list[list[Any]], msg_type: int, family: int, reason: str
) -> None:
    t, stage = tracker()
    t.add_datagram(encode(attrs, msg_type=msg_type, family=family), 100.0)
    t.add_datagram(encode(attrs, msg_type=msg_type, family=family), 100.0)
    assert t.flush(now=101.0) == []
    assert stage.dropped == {reason: 2} and balanced(stage)


def test_a_header_too_short_for_a_conntrack_message_ends_the_datagram() -> None:
    data = bytearray(b"".join(connection()))
    struct.pack_into("I", data, 0, 16)
    assert parse_datagram(bytes(data)) == [DROP_TRUNCATED]


def test_a_message_cut_inside_its_attributes_is_undecodable_and_the_one_before_counts() -> None:
    cut = bytearray(event("new", VIA_SERVICE)[:76])
    struct.pack_into("I", cut, 0, 76)  # whole by its header, its reply tuple cut in two
    found = parse_datagram(event("update", VIA_SERVICE, FROM_BACKEND) + bytes(cut))
    assert isinstance(found[0], FlowEvent) and found[0].answered
    assert found[1:] == [DROP_UNDECODABLE]


def test_an_attribute_that_does_not_decode_leaves_the_message_without_its_tuple() -> None:
    data = bytearray(event("new", VIA_SERVICE))
    struct.pack_into("H", data, 20, 200)  # the first attribute claims more than the message
    assert parse_datagram(bytes(data)) == [DROP_MISSING_TUPLE]


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.lists(st.sampled_from([*connection(), event("new", (CLIENT, 1, BACKEND, 2))]), min_size=1),
)
def test_any_bytes_are_counted_and_never_raise(data: st.DataObject, parts: list[bytes]) -> None:
    whole = bytearray(b"".join(parts))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(whole) - 1))
        whole[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(whole)))
    t, stage = tracker()
    t.add_datagram(bytes(whole[:cut]), 100.0)
    t.add_datagram(data.draw(st.binary(max_size=300)), 100.0)
    t.flush(now=101.0)
    assert balanced(stage)
