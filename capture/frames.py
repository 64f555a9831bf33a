"""Captured frames -> the UDP or TCP segment inside, or why not.

The capture agent's pure link/network/transport decoder: one captured frame
and its link type in, a `Segment` (addresses, ports, transport, payload) or a
drop reason out. No I/O, no state (but for a bounded memo of address texts,
`capture.texts`), no checksum checks (offloading leaves the
checksums of outgoing packets unfilled in captures). It promises:

* `decode_frame` never raises, whatever the bytes; each rule broken raises
  one private error inside, caught at the top and returned as its `DROP_*`
  reason. All reasons are listed in `DROP_REASONS`.
* Link types: Ethernet, Linux cooked captures SLL and SLL2, and raw IP under
  each number it is written with (tun devices); Ethernet and the cooked
  captures may carry one or two 802.1Q/802.1ad tags.
* IPv4 honours IHL (options are skipped) and the total length, which drops
  Ethernet padding. IPv6 walks hop-by-hop, routing, destination options and
  fragment headers. A total or payload length of 0 means "as captured", the
  way segmentation offload (TSO, BIG TCP) shows up in captures.
* Every IP fragment is dropped, the first one too: without reassembly no
  piece holds a whole DNS message. An IPv6 "atomic" fragment header (offset 0,
  no more fragments) is not a fragment.
* UDP payloads end where the UDP length says; TCP payloads start after the
  data offset (options skipped) and end with the IP packet.
* Addresses are written exactly as ``str(ipaddress.ip_address(...))`` would.

`read_plain_dns` is the DNS capture's usual frame in one C call (built with
``capture/_dnsfast.c``): an untagged Ethernet frame of IPv4 without options,
unfragmented, carrying a whole UDP datagram from port 53 whose payload is the
usual DNS response (see `capture.dnswire`). It gives the `Segment` that
`decode_frame` gives and the response `capture.dnswire.parse_response` gives,
or None for any other frame, which the Python decides. `read_plain_block` does
the same for every frame of a receive ring's block at once (the walk of
`capture.packetring.read_block` in C, with each usual frame read in the same
call), so the capture thread pays no Python per usual frame until its folder
takes the answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Final, Literal

import msgspec

from capture.dnswire import NATIVE_PARSE, DnsResponse
from capture.packetring import FrameSink
from capture.texts import Texts

LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101  # raw IP, as written in pcap files
DLT_RAW: Final = 12  # raw IP, as libpcap on Linux and most systems numbers it live
DLT_RAW_OPENBSD: Final = 14  # raw IP, OpenBSD's number
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_LINUX_SLL2: Final = 276
RAW_IP_LINKTYPES: Final = frozenset({LINKTYPE_RAW, DLT_RAW, DLT_RAW_OPENBSD})

DROP_UNSUPPORTED_LINKTYPE: Final = "unsupported_linktype"
DROP_NOT_IP: Final = "not_ip"  # ARP, LLDP, ... or a raw packet of another version
DROP_VLAN_DEPTH: Final = "vlan_depth"  # more than two VLAN tags
DROP_BAD_HEADER: Final = "bad_header"  # a header too short or inconsistent
DROP_CAPTURE_TRUNCATED: Final = "capture_truncated"  # snap length cut the packet
DROP_IP_FRAGMENT: Final = "ip_fragment"
DROP_UNSUPPORTED_PROTOCOL: Final = "unsupported_protocol"  # neither UDP nor TCP

#: Every reason `decode_frame` can give, so callers can register all counters.
DROP_REASONS: Final = (
    DROP_UNSUPPORTED_LINKTYPE,
    DROP_NOT_IP,
    DROP_VLAN_DEPTH,
    DROP_BAD_HEADER,
    DROP_CAPTURE_TRUNCATED,
    DROP_IP_FRAGMENT,
    DROP_UNSUPPORTED_PROTOCOL,
)

Transport = Literal["udp", "tcp"]


class Segment(msgspec.Struct, frozen=True, gc=False):
    """One UDP datagram's or TCP segment's addresses, ports and payload.

    A frozen msgspec Struct rather than a frozen dataclass: one is made per
    frame, and it is built ten times faster (``bench_capture_live``)."""

    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    transport: Transport
    payload: bytes
    seq: int = 0
    """TCP: the sequence number of the payload's first byte (0 for UDP)."""


_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
# 802.1Q, 802.1ad, and the pre-standard QinQ type some switches still send.
_VLAN_ETHERTYPES: Final = frozenset({0x8100, 0x88A8, 0x9100})
_MAX_VLAN_TAGS: Final = 2

_PROTO_TCP: Final = 6
_PROTO_UDP: Final = 17
_IPV6_SKIPPABLE: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT: Final = 44
# Each extension header holds at least 8 bytes, so the walk ends anyway; the
# bound only says that nobody sends more than a handful.
_MAX_IPV6_EXTENSIONS: Final = 8

_unpack_u16 = struct.Struct("!H").unpack_from
_unpack_ipv4 = struct.Struct("!BxHxxHxB").unpack_from  # version/IHL, total, flags/offset, proto
_unpack_ipv6 = struct.Struct("!xxxxHB").unpack_from  # payload length, next header
_unpack_ports_length = struct.Struct("!HHH").unpack_from  # UDP ports and length
_unpack_tcp = struct.Struct("!HHI").unpack_from  # ports and sequence number
_ntop = socket.inet_ntop
# Ethernet, IPv4 without options, UDP: EtherType, version/IHL, total length,
# flags/fragment offset, protocol, addresses, ports and UDP length at once.
_unpack_ether_ipv4_udp = struct.Struct("!12xHBxH2xHxB2x4s4sHHH").unpack_from
_ETHER_IPV4_UDP_SIZE: Final = 42  # 14 + 20 + 8


class _Drop(Exception):
    """Carries a `DROP_*` reason to `decode_frame`; never escapes this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_frame(frame: bytes | bytearray | memoryview, linktype: int) -> Segment | str:
    """Decode one captured frame of the given link type down to UDP or TCP."""
    data = frame if isinstance(frame, bytes) else bytes(frame)
    if linktype == LINKTYPE_ETHERNET and len(data) >= _ETHER_IPV4_UDP_SIZE:
        segment = _plain_udp_over_ipv4(data)
        if segment is not None:
            return segment
    try:
        if linktype == LINKTYPE_ETHERNET:
            return _decode_ethertype(data, 12)
        if linktype == LINKTYPE_LINUX_SLL:
            return _decode_ethertype(data, 14)
        if linktype == LINKTYPE_LINUX_SLL2:
            return _decode_ethertype(data, 0, header_end=20)
        if linktype in RAW_IP_LINKTYPES:
            return _decode_raw_ip(data)
        return DROP_UNSUPPORTED_LINKTYPE
    except _Drop as drop:
        return drop.reason


def _plain_udp_over_ipv4(data: bytes) -> Segment | None:
    """The usual frame, decoded with one unpack: a whole UDP datagram in an
    untagged Ethernet frame carrying IPv4 without options, unfragmented, with
    its lengths filled in and consistent. None for anything else, which the
    general path decodes (or drops, with its reason)."""
    ethertype, version_ihl, total, fragment, protocol, src, dst, sport, dport, length = (
        _unpack_ether_ipv4_udp(data, 0)
    )
    packet_end = 14 + total
    if (
        ethertype != _ETHERTYPE_IPV4
        or version_ihl != 0x45
        or protocol != _PROTO_UDP
        or fragment & 0x3FFF
        or total < 28
        or packet_end > len(data)
        or length < 8
        or 34 + length > packet_end
    ):
        return None
    return Segment(_ipv4_text(src), _ipv4_text(dst), sport, dport, "udp",
                   data[42 : 34 + length])  # fmt: skip


def _decode_ethertype(data: bytes, at: int, header_end: int = 0) -> Segment:
    """Read the EtherType at `at` and any VLAN tags, then the IP packet.

    Ethernet and SLL put the EtherType last in their header, so the packet
    follows it; SLL2 puts it first, and its header ends at `header_end`.
    """
    if len(data) < max(at + 2, header_end):
        raise _Drop(DROP_BAD_HEADER)
    (ethertype,) = _unpack_u16(data, at)
    offset = max(at + 2, header_end)
    for _ in range(_MAX_VLAN_TAGS):
        if ethertype not in _VLAN_ETHERTYPES:
            break
        # A tag is the 2-byte TCI followed by the EtherType it encloses.
        if len(data) < offset + 4:
            raise _Drop(DROP_BAD_HEADER)
        (ethertype,) = _unpack_u16(data, offset + 2)
        offset += 4
    else:
        if ethertype in _VLAN_ETHERTYPES:
            raise _Drop(DROP_VLAN_DEPTH)
    if ethertype == _ETHERTYPE_IPV4:
        return _decode_ipv4(data, offset)
    if ethertype == _ETHERTYPE_IPV6:
        return _decode_ipv6(data, offset)
    raise _Drop(DROP_NOT_IP)


def _decode_raw_ip(data: bytes) -> Segment:
    version = data[0] >> 4 if data else 0
    if version == 4:
        return _decode_ipv4(data, 0)
    if version == 6:
        return _decode_ipv6(data, 0)
    raise _Drop(DROP_NOT_IP)


def _decode_ipv4(data: bytes, offset: int) -> Segment:
    end = len(data)
    if end < offset + 20:
        raise _Drop(DROP_BAD_HEADER)
    version_ihl, total_length, fragment, protocol = _unpack_ipv4(data, offset)
    header_length = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_length < 20:
        raise _Drop(DROP_BAD_HEADER)
    packet_end = _packet_end(offset, total_length, header_length, end)
    if offset + header_length > packet_end:
        raise _Drop(DROP_BAD_HEADER)
    if fragment & 0x3FFF:  # more-fragments flag or a fragment offset
        raise _Drop(DROP_IP_FRAGMENT)
    src = _ipv4_text(data[offset + 12 : offset + 16])
    dst = _ipv4_text(data[offset + 16 : offset + 20])
    return _decode_transport(data, protocol, offset + header_length, packet_end, src, dst)


def _decode_ipv6(data: bytes, offset: int) -> Segment:
    end = len(data)
    if end < offset + 40:
        raise _Drop(DROP_BAD_HEADER)
    payload_length, next_header = _unpack_ipv6(data, offset)
    if data[offset] >> 4 != 6:
        raise _Drop(DROP_BAD_HEADER)
    pos = offset + 40
    packet_end = _packet_end(pos, payload_length, 0, end)
    for _ in range(_MAX_IPV6_EXTENSIONS):
        if next_header in _IPV6_SKIPPABLE:
            if pos + 8 > packet_end:
                raise _Drop(DROP_BAD_HEADER)
            next_header, pos = data[pos], pos + (data[pos + 1] + 1) * 8
        elif next_header == _IPV6_FRAGMENT:
            if pos + 8 > packet_end:
                raise _Drop(DROP_BAD_HEADER)
            (offset_flags,) = _unpack_u16(data, pos + 2)
            if offset_flags & 0xFFF9:  # a fragment offset or the more-fragments flag
                raise _Drop(DROP_IP_FRAGMENT)
            next_header, pos = data[pos], pos + 8
        else:
            break
    else:
        raise _Drop(DROP_BAD_HEADER)
    if pos > packet_end:  # the last extension header claimed more than there is
        raise _Drop(DROP_BAD_HEADER)
    src = _ipv6_text_once(data[offset + 8 : offset + 24])
    dst = _ipv6_text_once(data[offset + 24 : offset + 40])
    return _decode_transport(data, next_header, pos, packet_end, src, dst)


def _packet_end(start: int, length: int, minimum: int, captured_end: int) -> int:
    """Where the IP packet ends, from its length field counted from `start`."""
    if length == 0:  # segmentation offload: the kernel did not fill it in
        return captured_end
    if length < minimum:
        raise _Drop(DROP_BAD_HEADER)
    if start + length > captured_end:
        raise _Drop(DROP_CAPTURE_TRUNCATED)
    return start + length  # anything after it is link-layer padding


def _decode_transport(
    data: bytes, protocol: int, pos: int, packet_end: int, src: str, dst: str
) -> Segment:
    if protocol == _PROTO_UDP:
        if pos + 8 > packet_end:
            raise _Drop(DROP_BAD_HEADER)
        src_port, dst_port, length = _unpack_ports_length(data, pos)
        if length < 8 or pos + length > packet_end:
            raise _Drop(DROP_BAD_HEADER)
        return Segment(src, dst, src_port, dst_port, "udp", data[pos + 8 : pos + length])
    if protocol == _PROTO_TCP:
        if pos + 20 > packet_end:
            raise _Drop(DROP_BAD_HEADER)
        src_port, dst_port, seq = _unpack_tcp(data, pos)
        header_length = (data[pos + 12] >> 4) * 4
        if header_length < 20 or pos + header_length > packet_end:
            raise _Drop(DROP_BAD_HEADER)
        payload = data[pos + header_length : packet_end]
        return Segment(src, dst, src_port, dst_port, "tcp", payload, seq)
    raise _Drop(DROP_UNSUPPORTED_PROTOCOL)


def _ipv4_text_of(packed: bytes) -> str:
    return _ntop(socket.AF_INET, packed)


def _ipv6_text(packed: bytes) -> str:
    text = _ntop(socket.AF_INET6, packed)
    # glibc writes IPv4-compatible and IPv4-mapped addresses with a dotted
    # tail; ipaddress decides those, as in capture.dnswire, so that every part
    # of callmap writes an address the same way (joins by IP depend on it).
    if "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text


_ipv4_texts = Texts(_ipv4_text_of)
_ipv4_text = _ipv4_texts.text
_ipv6_text_once = Texts(_ipv6_text).text


PlainDnsReader = Callable[[bytes | memoryview], tuple[Segment, DnsResponse] | None]
"""Reads a frame: its segment and response when both are the usual case, else None."""


PlainSink = Callable[[Segment, DnsResponse, float], None]
"""Takes the segment and response of one usual frame and its capture time."""
PlainBlockReader = Callable[[memoryview, int, int, PlainSink, FrameSink], tuple[int, bool, int]]
"""``(ring, start, size, plain, other)`` -> ``(frames, sound, usual)``: the frames and
soundness `capture.packetring.read_block` would give, and how many were usual."""


def _readers_in_c() -> tuple[PlainDnsReader, PlainBlockReader] | tuple[None, None]:
    """``capture._dnsfast``'s frame and block readers, told what they make and share,
    when it was built."""
    if not NATIVE_PARSE:
        return None, None
    from capture import _dnsfast

    _dnsfast.set_frame_types(Segment, *_ipv4_texts.shared())
    return _dnsfast.read_frame, _dnsfast.read_block


_READERS_IN_C = _readers_in_c()
read_plain_dns: Final[PlainDnsReader | None] = _READERS_IN_C[0]
"""The usual frame read in C, or None where ``capture/_dnsfast.c`` was not built;
see the module docstring."""
read_plain_block: Final[PlainBlockReader | None] = _READERS_IN_C[1]
"""A receive ring block's usual frames read in C, or None where it was not built."""
