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
import struct
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from pyroute2.netlink import NLM_F_CREATE
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_NEW,
    IPS_SEEN_REPLY,
    AsyncNFCTSocket,
)

from callmap.wire.records import Transport
from capture.addresses import packed_address

DROP_OTHER_PROTOCOL = "other_protocol"
"""An event of a protocol other than TCP and UDP (ICMP, SCTP, ...): no edge carries it."""
# Bad input: logged once per reason.
DROP_TRUNCATED = "truncated"
DROP_UNDECODABLE = "undecodable"
DROP_NOT_CONNTRACK = "not_a_conntrack_event"
DROP_ODD_FAMILY = "odd_family"
DROP_MISSING_TUPLE = "missing_tuple"
DROP_MISSING_STATUS = "missing_status"
BAD_INPUT = frozenset(
    {
        DROP_TRUNCATED,
        DROP_UNDECODABLE,
        DROP_NOT_CONNTRACK,
        DROP_ODD_FAMILY,
        DROP_MISSING_TUPLE,
        DROP_MISSING_STATUS,
    }
)


EventKind = Literal["new", "update", "destroy"]

# TCP conntrack states (enum tcp_conntrack, include/uapi/linux/netfilter/nf_conntrack_tcp.h)
TCP_TIME_WAIT = 7
"""Both sides closed: the connection ended in order."""
TCP_CLOSE = 8
"""A reset ended the connection (or refused it)."""
Endpoints = tuple[str, int, str, int]
"""A direction of a flow: source address and port, destination address and port."""


_HEADER_SIZE = 20  # nlmsghdr (16) + nfgenmsg (4): less is no conntrack message
_LENGTH = struct.Struct("=I")  # nlmsg_len, in host order like the rest of the header
_ADDRESS_ATTRS = {
    socket.AF_INET: ("CTA_IP_V4_SRC", "CTA_IP_V4_DST"),
    socket.AF_INET6: ("CTA_IP_V6_SRC", "CTA_IP_V6_DST"),
}


_TRANSPORTS: dict[int, Transport] = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One conntrack event of a TCP or UDP flow."""

    kind: EventKind
    ct_id: int | None
    """The kernel's id of the flow (``CTA_ID``); None if the event had none."""
    status: int
    """The flow's ``IPS_*`` status bits."""
    orig: Endpoints
    """The original direction, as the client sent it (destination before DNAT)."""
    reply: Endpoints
    """The reply direction, as the answering side sends it (source after DNAT)."""
    transport: Transport = "tcp"
    tcp_state: int | None = None
    """The TCP flow's conntrack state (``TCP_CONNTRACK_*``) when the event carries it."""
    bytes: tuple[int, int] | None = None
    """Bytes each way (original, reply) when the event carries the flow's counters: a
    DESTROY, when the node's conntrack counts bytes (``nf_conntrack_acct``)."""

    @property
    def answered(self) -> bool:
        return bool(self.status & IPS_SEEN_REPLY)

    @property
    def natted(self) -> bool:
        """NAT sent the client's packets to someone other than the address it dialled."""
        return self.orig[2:4] != self.reply[0:2]


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
    found = _plain_events(data, whole)
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
    while offset + _HEADER_SIZE <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        if length < _HEADER_SIZE or offset + length > len(data):
            break
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return min(offset, len(data))


# The plain case, read straight from the bytes: pyroute2 decodes every attribute
# into objects and costs about 200 us an event, which caps a node at about a
# thousand connections a second; this reads the few attributes an event needs in
# a few microseconds. Anything it does not expect (another message type, an odd
# family, an attribute missing, repeated or of an odd size, a length that does
# not add up) sends the whole datagram to pyroute2's parser, so bad input is
# judged exactly as before. Numbers: include/uapi/linux/netfilter/nfnetlink_conntrack.h.
_CT_NEW = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
_CT_DELETE = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY, _CTA_STATUS, _CTA_ID = 1, 2, 3, 12
_CTA_PROTOINFO, _CTA_COUNTERS_ORIG, _CTA_COUNTERS_REPLY = 4, 9, 10
_CTA_PROTOINFO_TCP, _CTA_PROTOINFO_TCP_STATE = 1, 1
_CTA_COUNTERS_BYTES, _CTA_COUNTERS32_BYTES = 2, 4
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3
_PLAIN_ADDRESSES: dict[int, tuple[int, int]] = {  # family: (source attribute, size)
    socket.AF_INET: (1, 4),  # CTA_IP_V4_SRC; CTA_IP_V4_DST follows
    socket.AF_INET6: (3, 16),  # CTA_IP_V6_SRC; CTA_IP_V6_DST follows
}
_NLA_TYPE = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_NLA_HEADER = struct.Struct("=HH")
_TYPE_AND_FLAGS = struct.Struct("=HH")
_BE16 = struct.Struct("!H")
_BE32 = struct.Struct("!I")
_Spans = dict[int, tuple[int, int]]


_Layouts = dict[tuple[int, int], tuple[struct.Struct, frozenset[tuple[bytes, ...]]]]


def _tuple_layouts() -> _Layouts:
    """By (address size, tuple size): how the kernel lays out a tuple of addresses and
    ports, without a zone (CTA_TUPLE_IP with source and destination, then
    CTA_TUPLE_PROTO with number, source and destination port), as the fields to
    unpack and the attribute headers to expect, nested ones flagged or not."""
    nested = (0, 0x8000)
    layouts: _Layouts = {}
    for size, source in ((4, 1), (16, 3)):
        ip_size = 4 + 2 * (4 + size)
        fields = struct.Struct(f"=8s{size}s4s{size}s8sB3x4s2s2x4s2s2x")
        headers = frozenset(
            (
                _NLA_HEADER.pack(ip_size, 1 | ip_flag) + _NLA_HEADER.pack(4 + size, source),
                _NLA_HEADER.pack(4 + size, source + 1),
                _NLA_HEADER.pack(28, 2 | proto_flag) + _NLA_HEADER.pack(5, 1),
                _NLA_HEADER.pack(6, 2),
                _NLA_HEADER.pack(6, 3),
            )
            for ip_flag in nested
            for proto_flag in nested
        )
        layouts[size, ip_size + 28] = (fields, headers)
    return layouts


_TUPLE_LAYOUTS = _tuple_layouts()


def _plain_events(data: bytes, whole: int) -> list[FlowEvent | str] | None:
    """The events of the first ``whole`` bytes when every message is a plain
    conntrack event; None otherwise."""
    found: list[FlowEvent | str] = []
    offset = 0
    try:
        while offset < whole:
            (length,) = _LENGTH.unpack_from(data, offset)
            if length & 3:  # pyroute2 steps by the length as it is, unaligned
                return None
            item = _plain_event(data, offset, offset + length)
            if item is None:
                return None
            found.append(item)
            offset += length
    except (struct.error, IndexError):
        return None
    return found


def _plain_event(data: bytes, start: int, end: int) -> FlowEvent | str | None:
    msg_type, flags = _TYPE_AND_FLAGS.unpack_from(data, start + 4)
    kind: EventKind
    if msg_type == _CT_NEW:
        kind = "new" if flags & NLM_F_CREATE else "update"
    elif msg_type == _CT_DELETE:
        kind = "destroy"
    else:
        return None
    addresses = _PLAIN_ADDRESSES.get(data[start + 16])  # nfgen_family
    if addresses is None:
        return None
    top = _spans(data, start + _HEADER_SIZE, end)
    if top is None:
        return None
    orig_span, reply_span = top.get(_CTA_TUPLE_ORIG), top.get(_CTA_TUPLE_REPLY)
    status_span, id_span = top.get(_CTA_STATUS), top.get(_CTA_ID)
    if orig_span is None or reply_span is None or status_span is None:
        return None
    orig = _plain_tuple(data, orig_span, addresses)
    if orig is None:
        return None
    transport = _TRANSPORTS.get(orig[0])
    if transport is None:
        return DROP_OTHER_PROTOCOL
    reply = _plain_tuple(data, reply_span, addresses)
    status = _be32(data, status_span)
    ct_id = None if id_span is None else _be32(data, id_span)
    if reply is None or orig[1] is None or reply[1] is None:
        return None
    if status is None or (id_span and ct_id is None):
        return None
    tcp_state: int | None = None
    if transport == "tcp" and _CTA_PROTOINFO in top:
        tcp_state = _plain_tcp_state(data, top[_CTA_PROTOINFO])
        if tcp_state is None:
            return None
    counted: tuple[int, int] | None = None
    if _CTA_COUNTERS_ORIG in top or _CTA_COUNTERS_REPLY in top:
        counted = _plain_bytes(data, top)
        if counted is None:
            return None
    return FlowEvent(kind, ct_id, status, orig[1], reply[1], transport, tcp_state, counted)


_STATE_FIRST = _NLA_HEADER.pack(5, _CTA_PROTOINFO_TCP_STATE)


def _plain_tcp_state(data: bytes, span: tuple[int, int]) -> int | None:
    """CTA_PROTOINFO's TCP state; None unless it holds exactly one."""
    start, end = span
    if end - start >= 12:  # the kernel's layout: CTA_PROTOINFO_TCP alone, its state first
        length, kind = _NLA_HEADER.unpack_from(data, start)
        if (
            length == end - start
            and kind & _NLA_TYPE == _CTA_PROTOINFO_TCP
            and data[start + 4 : start + 8] == _STATE_FIRST
            and _state_only_once(data, start + 12, end)
        ):
            return data[start + 8]
    info = _spans(data, *span)
    tcp = None if info is None else info.get(_CTA_PROTOINFO_TCP)
    fields = None if tcp is None else _spans(data, *tcp)
    state = None if fields is None else fields.get(_CTA_PROTOINFO_TCP_STATE)
    if state is None or state[1] - state[0] != 1:
        return None
    return data[state[0]]


def _state_only_once(data: bytes, offset: int, end: int) -> bool:
    """No second state among the TCP attributes after the first (pyroute2 would take
    the first, but :func:`_spans` refuses repeats: so must this path)."""
    while offset + 4 <= end:
        length, kind = _NLA_HEADER.unpack_from(data, offset)
        if length < 4 or kind & _NLA_TYPE == _CTA_PROTOINFO_TCP_STATE:
            return False
        offset += (length + 3) & ~3
    return offset == end


def _plain_bytes(data: bytes, top: _Spans) -> tuple[int, int] | None:
    """Bytes each way from CTA_COUNTERS_ORIG and _REPLY; None unless both hold them."""
    both = []
    for attr in (_CTA_COUNTERS_ORIG, _CTA_COUNTERS_REPLY):
        span = top.get(attr)
        counters = None if span is None else _spans(data, *span)
        if counters is None:
            return None
        wide, narrow = counters.get(_CTA_COUNTERS_BYTES), counters.get(_CTA_COUNTERS32_BYTES)
        if wide is not None and wide[1] - wide[0] == 8 and narrow is None:
            both.append(int.from_bytes(data[wide[0] : wide[1]], "big"))
        elif narrow is not None and narrow[1] - narrow[0] == 4 and wide is None:
            both.append(int.from_bytes(data[narrow[0] : narrow[1]], "big"))
        else:
            return None
    return both[0], both[1]


def _plain_tuple(
    data: bytes, span: tuple[int, int], addresses: tuple[int, int]
) -> tuple[int, Endpoints | None] | None:
    """A tuple's protocol number and its endpoints (None without ports)."""
    start, end = span
    layout = _TUPLE_LAYOUTS.get((addresses[1], end - start))
    if layout is not None:  # the kernel's own layout: one unpack, no walk
        fields, headers = layout
        head, src, head_dst, dst, head_proto, proto, head_sport, sport, head_dport, dport = (
            fields.unpack_from(data, start)
        )
        if (head, head_dst, head_proto, head_sport, head_dport) in headers:
            return proto, (
                _address(src),
                int.from_bytes(sport, "big"),
                _address(dst),
                int.from_bytes(dport, "big"),
            )
    parts = _tuple_parts(data, span)
    if parts is None:
        return None
    number = parts[1].get(_CTA_PROTO_NUM)
    if number is None or number[1] - number[0] != 1:
        return None
    return data[number[0]], _plain_endpoints(data, parts, addresses)


def _spans(data: bytes, offset: int, end: int) -> _Spans | None:
    """Where the payload of each attribute between ``offset`` and ``end`` lies, by
    type; None if one does not fit or a type comes twice."""
    spans: _Spans = {}
    while offset < end:
        length, kind = _NLA_HEADER.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            return None
        kind &= _NLA_TYPE
        if kind in spans:
            return None
        spans[kind] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return spans


def _tuple_parts(data: bytes, span: tuple[int, int]) -> tuple[_Spans, _Spans] | None:
    """A tuple's address attributes and protocol attributes."""
    parts = _spans(data, *span)
    if parts is None:
        return None
    ip, proto = parts.get(_CTA_TUPLE_IP), parts.get(_CTA_TUPLE_PROTO)
    if ip is None or proto is None:
        return None
    ips, protos = _spans(data, *ip), _spans(data, *proto)
    if ips is None or protos is None:
        return None
    return ips, protos


def _plain_endpoints(
    data: bytes, parts: tuple[_Spans, _Spans], addresses: tuple[int, int]
) -> Endpoints | None:
    ips, protos = parts
    source_attr, size = addresses
    src, dst = ips.get(source_attr), ips.get(source_attr + 1)
    sport, dport = protos.get(_CTA_PROTO_SRC_PORT), protos.get(_CTA_PROTO_DST_PORT)
    if src is None or dst is None or sport is None or dport is None:
        return None
    if src[1] - src[0] != size or dst[1] - dst[0] != size:
        return None
    if sport[1] - sport[0] != 2 or dport[1] - dport[0] != 2:
        return None
    return (
        _address(data[src[0] : src[1]]),
        _BE16.unpack_from(data, sport[0])[0],
        _address(data[dst[0] : dst[1]]),
        _BE16.unpack_from(data, dport[0])[0],
    )


def _be32(data: bytes, span: tuple[int, int]) -> int | None:
    return _BE32.unpack_from(data, span[0])[0] if span[1] - span[0] == 4 else None


@lru_cache(maxsize=16_384)
def _address(packed: bytes) -> str:
    """A packed address in the wire's form, as pyroute2's decoding and
    :func:`_canonical` give it; a node sees few addresses, many times over."""
    return packed_address(packed)


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
    transport = _TRANSPORTS.get(proto)
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
