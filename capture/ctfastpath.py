"""Conntrack events read straight from the bytes of their netlink messages. Pure.

pyroute2 decodes every attribute into objects and costs about 200 µs an
event, which caps a node at about a thousand connections a second; this reads
the few attributes an event needs in a few microseconds. Anything it does not
expect (another message type, an odd family, an attribute missing, repeated or
of an odd size, a length that does not add up) makes :func:`plain_events`
answer None, and :mod:`capture.ctnetlink` sends the whole datagram to
pyroute2's parser, so bad input is judged exactly as there. Numbers:
``include/uapi/linux/netfilter/nfnetlink_conntrack.h``.
"""

from __future__ import annotations

import socket
import struct
from functools import lru_cache

from capture.addresses import packed_address
from capture.ctevent import DROP_OTHER_PROTOCOL, TRANSPORTS, Endpoints, EventKind, FlowEvent

HEADER_SIZE = 20
"""nlmsghdr (16) + nfgenmsg (4): less is no conntrack message."""
LENGTH = struct.Struct("=I")
"""nlmsg_len, in host order like the rest of the header."""
_NLM_F_CREATE = 0x400
_CTNETLINK = 1  # NFNL_SUBSYS_CTNETLINK
_IPCTNL_MSG_CT_NEW, _IPCTNL_MSG_CT_DELETE = 0, 2
_CT_NEW = _CTNETLINK << 8 | _IPCTNL_MSG_CT_NEW
_CT_DELETE = _CTNETLINK << 8 | _IPCTNL_MSG_CT_DELETE
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


def plain_events(data: bytes, whole: int) -> list[FlowEvent | str] | None:
    """The events of the first ``whole`` bytes when every message is a plain
    conntrack event; None otherwise."""
    found: list[FlowEvent | str] = []
    offset = 0
    try:
        while offset < whole:
            (length,) = LENGTH.unpack_from(data, offset)
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
        kind = "new" if flags & _NLM_F_CREATE else "update"
    elif msg_type == _CT_DELETE:
        kind = "destroy"
    else:
        return None
    addresses = _PLAIN_ADDRESSES.get(data[start + 16])  # nfgen_family
    if addresses is None:
        return None
    top = _spans(data, start + HEADER_SIZE, end)
    if top is None:
        return None
    orig_span, reply_span = top.get(_CTA_TUPLE_ORIG), top.get(_CTA_TUPLE_REPLY)
    status_span, id_span = top.get(_CTA_STATUS), top.get(_CTA_ID)
    if orig_span is None or reply_span is None or status_span is None:
        return None
    orig = _plain_tuple(data, orig_span, addresses)
    if orig is None:
        return None
    transport = TRANSPORTS.get(orig[0])
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
