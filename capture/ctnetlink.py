"""Netlink datagrams of conntrack events, decoded into :class:`FlowEvent` records. Pure.

The kernel sends one ``ctnetlink`` message per event (NEW, UPDATE, DESTROY),
with the flow's original and reply tuples, its id and its status bits.

pyroute2's parser (with the policy its conntrack socket registers) decodes a
message in about 200 µs here: a node agent following 20,000 connections a
second, five or six events each, cannot afford it. So events laid out as the
kernel lays them out are read straight from the bytes (about 5 µs each), and
any datagram that is not plain events (another message type, an odd family,
a missing, repeated or odd-sized attribute) goes whole to pyroute2's parser,
which judges it as before. Both paths gave the same events for 19,882
recorded datagrams and 60,000 mutated ones (``tests/bench/bench_conntrack.py``
was where the cost showed).

Bad input (a datagram cut short or undecodable, a message without tuples or
status, an odd address family) becomes a drop reason in place of an event,
never an exception.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from typing import Any

from pyroute2.netlink import NLM_F_CREATE
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_NEW,
    AsyncNFCTSocket,
)

from capture.ctevent import (
    DROP_MISSING_STATUS,
    DROP_MISSING_TUPLE,
    DROP_NOT_CONNTRACK,
    DROP_ODD_FAMILY,
    DROP_OTHER_PROTOCOL,
    DROP_TRUNCATED,
    DROP_UNDECODABLE,
    TRANSPORTS,
    Endpoints,
    EventKind,
    FlowEvent,
)
from capture.ctfastpath import HEADER_SIZE, LENGTH, plain_events

_ADDRESS_ATTRS = {
    socket.AF_INET: ("CTA_IP_V4_SRC", "CTA_IP_V4_DST"),
    socket.AF_INET6: ("CTA_IP_V6_SRC", "CTA_IP_V6_DST"),
}


@cache
def _marshal() -> Marshal:
    """pyroute2's parser with the conntrack socket's policy: message type to class."""
    marshal = Marshal()
    marshal.msg_map.update(AsyncNFCTSocket.policy)
    return marshal


def parse_datagram(data: bytes) -> list[FlowEvent | str]:
    """The TCP and UDP events of one netlink datagram (it may hold several messages), in
    order; a drop reason in place of each message that is not one."""
    whole = _whole_messages(data)
    found = plain_events(data, whole)
    if found is None:
        found = _decoded_events(data, whole)
    if whole < len(data):
        found.append(DROP_TRUNCATED)
    return found


def _decoded_events(data: bytes, whole: int) -> list[FlowEvent | str]:
    """The events of the first ``whole`` bytes, as pyroute2's parser decodes them."""
    found: list[FlowEvent | str] = []
    try:
        for message in _marshal().parse(data[:whole]):
            try:
                found.append(event_from_message(message))
            except Exception:  # an attribute pyroute2 left as raw bytes, and the like
                found.append(DROP_UNDECODABLE)
    except Exception:  # pyroute2's parser raises struct.error and more on garbage
        found.append(DROP_UNDECODABLE)
    return found


def _whole_messages(data: bytes) -> int:
    """How many leading bytes of ``data`` are whole messages, by their headers' lengths.

    pyroute2's parser checks a header's length against the whole buffer, not
    against what is left of it, and would decode a cut-off last message from
    whatever follows; it gets only whole ones.
    """
    offset = 0
    while offset + HEADER_SIZE <= len(data):
        (length,) = LENGTH.unpack_from(data, offset)
        if length < HEADER_SIZE or offset + length > len(data):
            break
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return min(offset, len(data))


def event_from_message(message: Any) -> FlowEvent | str:
    """A decoded ``nfct_msg`` as a TCP or UDP flow event, or the reason it is not one."""
    header = message["header"]
    if header.get("error") is not None:
        return DROP_UNDECODABLE
    msg_type, flags = int(header["type"]), int(header["flags"])
    if msg_type >> 8 != NFNL_SUBSYS_CTNETLINK:
        return DROP_NOT_CONNTRACK
    kind: EventKind
    if msg_type & 0xFF == IPCTNL_MSG_CT_NEW:
        kind = "new" if flags & NLM_F_CREATE else "update"
    elif msg_type & 0xFF == IPCTNL_MSG_CT_DELETE:
        kind = "destroy"
    else:
        return DROP_NOT_CONNTRACK
    attrs = _ADDRESS_ATTRS.get(message["nfgen_family"])
    if attrs is None:
        return DROP_ODD_FAMILY
    orig_tuple = message.get_attr("CTA_TUPLE_ORIG")
    reply_tuple = message.get_attr("CTA_TUPLE_REPLY")
    if orig_tuple is None or reply_tuple is None:
        return DROP_MISSING_TUPLE
    proto = orig_tuple.get_nested("CTA_TUPLE_PROTO", "CTA_PROTO_NUM")
    if proto is None:
        return DROP_MISSING_TUPLE
    transport = TRANSPORTS.get(proto)
    if transport is None:
        return DROP_OTHER_PROTOCOL
    orig, reply = _endpoints(orig_tuple, attrs), _endpoints(reply_tuple, attrs)
    if isinstance(orig, str):
        return orig
    if isinstance(reply, str):
        return reply
    status = message.get_attr("CTA_STATUS")
    if status is None:
        return DROP_MISSING_STATUS
    ct_id = message.get_attr("CTA_ID")
    ct_id = None if ct_id is None else int(ct_id)
    tcp_state = None
    if transport == "tcp" and message.get_attr("CTA_PROTOINFO") is not None:
        tcp_state = _tcp_state(message.get_attr("CTA_PROTOINFO"))
        if tcp_state is None:
            return DROP_UNDECODABLE
    counted = None
    if message.get_attrs("CTA_COUNTERS_ORIG") or message.get_attrs("CTA_COUNTERS_REPLY"):
        counted = _bytes(message)
        if counted is None:
            return DROP_UNDECODABLE
    return FlowEvent(kind, ct_id, int(status), orig, reply, transport, tcp_state, counted)


def _tcp_state(protoinfo: Any) -> int | None:
    tcp = protoinfo.get_attrs("CTA_PROTOINFO_TCP")
    states = tcp[0].get_attrs("CTA_PROTOINFO_TCP_STATE") if len(tcp) == 1 else []
    return int(states[0]) if len(states) == 1 else None


def _bytes(message: Any) -> tuple[int, int] | None:
    both = []
    for name in ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY"):
        counters = message.get_attrs(name)
        if len(counters) != 1:
            return None
        found = [
            *counters[0].get_attrs("CTA_COUNTERS_BYTES"),
            *counters[0].get_attrs("CTA_COUNTERS32_BYTES"),
        ]
        if len(found) != 1:
            return None
        both.append(int(found[0]))
    return both[0], both[1]


def _endpoints(tuple_attr: Any, attrs: tuple[str, str]) -> Endpoints | str:
    address = tuple_attr.get_attr("CTA_TUPLE_IP")
    proto = tuple_attr.get_attr("CTA_TUPLE_PROTO")
    if address is None or proto is None:
        return DROP_MISSING_TUPLE
    src, dst = address.get_attr(attrs[0]), address.get_attr(attrs[1])
    sport, dport = proto.get_attr("CTA_PROTO_SRC_PORT"), proto.get_attr("CTA_PROTO_DST_PORT")
    if src is None or dst is None:
        # An IPv4 tuple in an IPv6 message, or the other way round.
        return DROP_ODD_FAMILY if address.get_attrs("CTA_IP_V4_SRC") else DROP_MISSING_TUPLE
    if sport is None or dport is None:
        return DROP_MISSING_TUPLE
    try:
        return _canonical(src), int(sport), _canonical(dst), int(dport)
    except ValueError:
        return DROP_UNDECODABLE


def _canonical(ip: str) -> str:
    """The wire's form of an address: Python's, IPv4-mapped IPv6 as plain IPv4."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
