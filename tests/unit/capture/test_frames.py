"""What capture.frames promises: captured frames in, UDP/TCP segments or a drop reason out."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether

from capture.frames import (
    DLT_RAW,
    DLT_RAW_OPENBSD,
    DROP_BAD_HEADER,
    DROP_CAPTURE_TRUNCATED,
    DROP_IP_FRAGMENT,
    DROP_NOT_IP,
    DROP_REASONS,
    DROP_UNSUPPORTED_LINKTYPE,
    DROP_UNSUPPORTED_PROTOCOL,
    DROP_VLAN_DEPTH,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    Segment,
    decode_frame,
)

DNS_BYTES = b"\x12\x34\x81\x80" + b"\x00" * 8 + b"dns payload"

# --- builders (plain struct, so the tests do not share the code under test) -------


def ipv4(
    payload: bytes,
    protocol: int = 17,
    src: str = "10.0.0.53",
    dst: str = "10.0.1.7",
    options: bytes = b"",
    fragment: int = 0x4000,  # DF, not fragmented
    total_length: int | None = None,
    version: int = 4,
) -> bytes:
    ihl = 5 + len(options) // 4
    length = 20 + len(options) + len(payload) if total_length is None else total_length
    head = struct.pack(
        "!BBHHHBBH4s4s",
        version << 4 | ihl,
        0,
        length,
        0x1234,
        fragment,
        64,
        protocol,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return head + options + payload


def ipv6(
    payload: bytes,
    next_header: int = 17,
    src: str = "fd00::53",
    dst: str = "fd00::1:7",
    payload_length: int | None = None,
) -> bytes:
    length = len(payload) if payload_length is None else payload_length
    head = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        length,
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return head + payload


def extension(next_header: int, body: bytes = b"\x01\x04\x00\x00\x00\x00") -> bytes:
    """A hop-by-hop, routing or destination options header (body pads to 8n-2)."""
    assert (len(body) + 2) % 8 == 0
    return bytes([next_header, (len(body) + 2) // 8 - 1]) + body


def fragment_header(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset << 3 | more, 0xABCD)


def udp(payload: bytes, sport: int = 53, dport: int = 40000, length: int | None = None) -> bytes:
    size = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, size, 0) + payload


def tcp(payload: bytes, sport: int = 53, dport: int = 40000, options: bytes = b"") -> bytes:
    offset = 5 + len(options) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, 1, 2, offset << 4, 0x18, 512, 0, 0)
    return head + options + payload


def ether(packet: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    """MACs, then each VLAN tag as its TPID and TCI, then the EtherType."""
    macs = bytes.fromhex("020000000001020000000002")
    vlans = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(tags))
    return macs + vlans + struct.pack("!H", ethertype) + packet


def sll(packet: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", protocol) + packet


def sll2(packet: bytes, protocol: int = 0x86DD) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 3, 1, 4, 6, b"\x02" * 8) + packet


UDP4 = Segment("10.0.0.53", "10.0.1.7", 53, 40000, "udp", DNS_BYTES)
UDP6 = Segment("fd00::53", "fd00::1:7", 53, 40000, "udp", DNS_BYTES)

# --- link layers ---------------------------------------------------------------


def test_ethernet_ipv4_udp() -> None:
    assert decode_frame(ether(ipv4(udp(DNS_BYTES))), LINKTYPE_ETHERNET) == UDP4


def test_ethernet_ipv6_udp() -> None:
    frame = ether(ipv6(udp(DNS_BYTES)), ethertype=0x86DD)

    assert decode_frame(frame, LINKTYPE_ETHERNET) == UDP6


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100)])
def test_one_or_two_vlan_tags_are_skipped(tags: tuple[int, ...]) -> None:
    frame = ether(ipv4(udp(DNS_BYTES)), tags=tags)

    assert decode_frame(frame, LINKTYPE_ETHERNET) == UDP4


def test_three_vlan_tags_are_too_deep() -> None:
    frame = ether(ipv4(udp(DNS_BYTES)), tags=(0x88A8, 0x8100, 0x8100))

    assert decode_frame(frame, LINKTYPE_ETHERNET) == DROP_VLAN_DEPTH


def test_linux_cooked_capture_v1() -> None:
    assert decode_frame(sll(ipv4(udp(DNS_BYTES))), LINKTYPE_LINUX_SLL) == UDP4


def test_linux_cooked_capture_v2() -> None:
    assert decode_frame(sll2(ipv6(udp(DNS_BYTES))), LINKTYPE_LINUX_SLL2) == UDP6


def test_linux_cooked_capture_with_a_vlan_tag() -> None:
    packet = struct.pack("!HH", 100, 0x0800) + ipv4(udp(DNS_BYTES))

    assert decode_frame(sll(packet, protocol=0x8100), LINKTYPE_LINUX_SLL) == UDP4


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, DLT_RAW, DLT_RAW_OPENBSD])
def test_raw_ip_under_each_of_its_numbers(linktype: int) -> None:
    assert decode_frame(ipv4(udp(DNS_BYTES)), linktype) == UDP4
    assert decode_frame(ipv6(udp(DNS_BYTES)), linktype) == UDP6


def test_unknown_link_type_is_unsupported() -> None:
    assert decode_frame(ether(ipv4(udp(DNS_BYTES))), 105) == DROP_UNSUPPORTED_LINKTYPE


def test_arp_is_not_ip() -> None:
    assert decode_frame(ether(b"\x00" * 28, ethertype=0x0806), LINKTYPE_ETHERNET) == DROP_NOT_IP


@pytest.mark.parametrize("packet", [b"", b"\x50" + b"\x00" * 40])
def test_raw_packet_of_no_ip_version_is_not_ip(packet: bytes) -> None:
    assert decode_frame(packet, LINKTYPE_RAW) == DROP_NOT_IP


def test_ethertype_and_ip_version_must_agree() -> None:
    frame = ether(ipv4(udp(DNS_BYTES), version=6))

    assert decode_frame(frame, LINKTYPE_ETHERNET) == DROP_BAD_HEADER


@pytest.mark.parametrize("size", [0, 6, 13, 15])
def test_frames_shorter_than_their_link_header_are_bad(size: int) -> None:
    assert decode_frame(ether(ipv4(udp(DNS_BYTES)), tags=(0x8100,))[:size], 1) == DROP_BAD_HEADER


# --- IPv4 -------------------------------------------------------------------------


def test_ipv4_options_are_skipped_by_ihl() -> None:
    packet = ipv4(udp(DNS_BYTES), options=b"\x94\x04\x00\x00" + b"\x01" * 4)

    assert decode_frame(packet, LINKTYPE_RAW) == UDP4


@pytest.mark.parametrize("ihl", [0, 4])
def test_ipv4_header_length_under_20_is_bad(ihl: int) -> None:
    packet = bytearray(ipv4(udp(DNS_BYTES)))
    packet[0] = 0x40 | ihl

    assert decode_frame(bytes(packet), LINKTYPE_RAW) == DROP_BAD_HEADER


def test_ipv4_header_longer_than_the_packet_is_bad() -> None:
    packet = bytearray(ipv4(b""))
    packet[0] = 0x4F  # 60 bytes of header in a 20-byte packet

    assert decode_frame(bytes(packet), LINKTYPE_RAW) == DROP_BAD_HEADER


@pytest.mark.parametrize(("protocol", "transport"), [(17, udp), (6, tcp)])
def test_ethernet_padding_is_not_payload(
    protocol: int, transport: Callable[[bytes], bytes]
) -> None:
    # TCP has no length of its own: only the IP total length ends its payload.
    frame = ether(ipv4(transport(b"\x01\x02"), protocol=protocol)) + b"\x00" * 16

    result = decode_frame(frame, LINKTYPE_ETHERNET)

    assert isinstance(result, Segment)
    assert result.payload == b"\x01\x02"


def test_ipv6_payload_length_ends_the_packet() -> None:
    frame = ether(ipv6(tcp(b"\x01\x02"), next_header=6), ethertype=0x86DD) + b"\x00" * 8

    result = decode_frame(frame, LINKTYPE_ETHERNET)

    assert isinstance(result, Segment)
    assert result.payload == b"\x01\x02"


def test_ipv4_longer_than_the_capture_is_truncated() -> None:
    packet = ipv4(udp(DNS_BYTES))

    assert decode_frame(packet[:-1], LINKTYPE_RAW) == DROP_CAPTURE_TRUNCATED


def test_ipv4_total_length_zero_means_as_captured() -> None:
    packet = ipv4(tcp(DNS_BYTES), protocol=6, total_length=0)

    result = decode_frame(packet, LINKTYPE_RAW)

    assert isinstance(result, Segment)
    assert result.payload == DNS_BYTES


@pytest.mark.parametrize(
    ("fragment", "why"),
    [(0x0010, "a later fragment"), (0x2000, "the first of several"), (0x2010, "a middle one")],
)
def test_ipv4_fragments_are_dropped(fragment: int, why: str) -> None:
    packet = ipv4(udp(DNS_BYTES), fragment=fragment)

    assert decode_frame(packet, LINKTYPE_RAW) == DROP_IP_FRAGMENT, why


def test_icmp_is_an_unsupported_protocol() -> None:
    assert decode_frame(ipv4(b"\x08\x00" + b"\x00" * 6, protocol=1), LINKTYPE_RAW) == (
        DROP_UNSUPPORTED_PROTOCOL
    )


# --- IPv6 -------------------------------------------------------------------------


def test_ipv6_extension_headers_are_walked() -> None:
    # hop-by-hop -> routing -> destination options -> UDP
    chain = extension(43) + extension(60) + extension(17, b"\x01\x0c" + b"\x00" * 12)
    packet = ipv6(chain + udp(DNS_BYTES), next_header=0)

    assert decode_frame(packet, LINKTYPE_RAW) == UDP6


@pytest.mark.parametrize("then", [17, 58], ids=["udp", "icmpv6"])
def test_ipv6_extension_header_longer_than_the_packet_is_bad(then: int) -> None:
    packet = ipv6(bytes([then, 9]) + b"\x00" * 6 + udp(DNS_BYTES), next_header=60)

    assert decode_frame(packet, LINKTYPE_RAW) == DROP_BAD_HEADER


@pytest.mark.parametrize(("offset", "more"), [(0, True), (185, False), (185, True)])
def test_ipv6_fragments_are_dropped(offset: int, more: bool) -> None:
    packet = ipv6(fragment_header(17, offset, more) + udp(DNS_BYTES), next_header=44)

    assert decode_frame(packet, LINKTYPE_RAW) == DROP_IP_FRAGMENT


def test_ipv6_atomic_fragment_is_a_whole_packet() -> None:
    packet = ipv6(fragment_header(17, 0, False) + udp(DNS_BYTES), next_header=44)

    assert decode_frame(packet, LINKTYPE_RAW) == UDP6


def test_ipv6_esp_is_an_unsupported_protocol() -> None:
    assert decode_frame(ipv6(b"\x00" * 16, next_header=50), LINKTYPE_RAW) == (
        DROP_UNSUPPORTED_PROTOCOL
    )


def test_ipv6_longer_than_the_capture_is_truncated() -> None:
    assert decode_frame(ipv6(udp(DNS_BYTES))[:-3], LINKTYPE_RAW) == DROP_CAPTURE_TRUNCATED


def test_ipv6_mapped_addresses_are_written_like_ipaddress() -> None:
    packet = ipv6(udp(DNS_BYTES), src="::ffff:10.0.0.53", dst="::10.0.0.1")

    result = decode_frame(packet, LINKTYPE_RAW)

    assert isinstance(result, Segment)
    assert result.src_ip == str(ipaddress.IPv6Address("::ffff:10.0.0.53"))
    assert result.dst_ip == str(ipaddress.IPv6Address("::10.0.0.1"))


# --- UDP and TCP -----------------------------------------------------------------


def test_udp_payload_ends_at_the_udp_length() -> None:
    datagram = udp(DNS_BYTES, length=8 + 4) + b"junk after the datagram"

    result = decode_frame(ipv4(datagram), LINKTYPE_RAW)

    assert isinstance(result, Segment)
    assert result.payload == DNS_BYTES[:4]


@pytest.mark.parametrize("length", [0, 7, 8 + len(DNS_BYTES) + 1])
def test_udp_length_outside_the_packet_is_bad(length: int) -> None:
    assert decode_frame(ipv4(udp(DNS_BYTES, length=length)), LINKTYPE_RAW) == DROP_BAD_HEADER


def test_tcp_payload_starts_after_the_data_offset_and_carries_its_sequence_number() -> None:
    options = b"\x01\x01\x08\x0a" + b"\x00" * 8  # NOP NOP timestamps
    segment = tcp(b"\x00\x0c" + DNS_BYTES[:12], sport=40000, dport=53, options=options)

    result = decode_frame(ether(ipv4(segment, protocol=6)), LINKTYPE_ETHERNET)

    expected_payload = b"\x00\x0c" + DNS_BYTES[:12]
    assert result == Segment("10.0.0.53", "10.0.1.7", 40000, 53, "tcp", expected_payload, seq=1)


def test_tcp_without_payload_has_an_empty_one() -> None:
    result = decode_frame(ipv6(tcp(b""), next_header=6), LINKTYPE_RAW)

    assert isinstance(result, Segment)
    assert (result.transport, result.payload) == ("tcp", b"")


@pytest.mark.parametrize("data_offset", [0, 4, 15])
def test_tcp_data_offset_outside_the_segment_is_bad(data_offset: int) -> None:
    segment = bytearray(tcp(b""))
    segment[12] = data_offset << 4

    assert decode_frame(ipv4(bytes(segment), protocol=6), LINKTYPE_RAW) == DROP_BAD_HEADER


def test_bytes_like_frames_are_accepted() -> None:
    frame = ether(ipv4(udp(DNS_BYTES)))

    assert decode_frame(memoryview(frame), LINKTYPE_ETHERNET) == UDP4
    assert decode_frame(bytearray(frame), LINKTYPE_ETHERNET) == UDP4


# --- every cut, random bytes, and scapy as an independent writer --------------------

VALID_FRAMES = [
    (ether(ipv4(udp(DNS_BYTES)), tags=(0x88A8, 0x8100)), LINKTYPE_ETHERNET),
    (ether(ipv6(extension(17) + udp(DNS_BYTES), next_header=0), 0x86DD), LINKTYPE_ETHERNET),
    (sll(ipv4(tcp(DNS_BYTES, options=b"\x01" * 4), protocol=6)), LINKTYPE_LINUX_SLL),
    (sll2(ipv6(fragment_header(6, 0, False) + tcp(DNS_BYTES), 44)), LINKTYPE_LINUX_SLL2),
    (ipv4(udp(DNS_BYTES), options=b"\x01" * 8), LINKTYPE_RAW),
]


@pytest.mark.parametrize(("frame", "linktype"), VALID_FRAMES)
def test_every_cut_of_a_valid_frame_is_a_drop(frame: bytes, linktype: int) -> None:
    assert isinstance(decode_frame(frame, linktype), Segment)

    for cut in range(len(frame)):
        assert decode_frame(frame[:cut], linktype) in DROP_REASONS, cut


linktypes = st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, DLT_RAW])


def is_result(value: object) -> bool:
    return isinstance(value, Segment) or value in DROP_REASONS


@given(st.binary(max_size=200), linktypes)
def test_random_bytes_never_raise(frame: bytes, linktype: int) -> None:
    assert is_result(decode_frame(frame, linktype))


@given(
    st.sampled_from(VALID_FRAMES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_valid_frames_never_raise(
    valid: tuple[bytes, int], edits: list[tuple[int, int]]
) -> None:
    frame, linktype = valid
    mutated = bytearray(frame)
    for offset, value in edits:
        mutated[offset % len(mutated)] = value

    assert is_result(decode_frame(bytes(mutated), linktype))


addresses4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
addresses6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)


@settings(deadline=None, max_examples=60)
@given(
    st.one_of(st.tuples(addresses4, addresses4), st.tuples(addresses6, addresses6)),
    ports,
    ports,
    st.binary(max_size=64),
    st.sampled_from(["udp", "tcp"]),
    st.sampled_from(["ether", "vlan", "sll", "sll2", "raw", "hop-by-hop"]),
)
def test_frames_written_by_scapy_decode_to_what_was_written(
    ips: tuple[str, str], sport: int, dport: int, payload: bytes, transport: str, link: str
) -> None:
    src, dst = ips
    version6 = ":" in src
    network = IPv6(src=src, dst=dst) if version6 else IP(src=src, dst=dst)
    if link == "hop-by-hop" and version6:
        network = network / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    layer4 = UDP(sport=sport, dport=dport) if transport == "udp" else TCP(sport=sport, dport=dport)
    packet = network / layer4 / payload
    frames = {
        "ether": (Ether() / packet, LINKTYPE_ETHERNET),
        "vlan": (Ether() / Dot1Q(vlan=7) / Dot1Q(vlan=8) / packet, LINKTYPE_ETHERNET),
        "sll": (CookedLinux(proto=0x86DD if version6 else 0x0800) / packet, LINKTYPE_LINUX_SLL),
        "sll2": (
            CookedLinuxV2(proto=0x86DD if version6 else 0x0800) / packet,
            LINKTYPE_LINUX_SLL2,
        ),
        "raw": (packet, LINKTYPE_RAW),
        "hop-by-hop": (packet, DLT_RAW),
    }
    frame, linktype = frames[link]

    result = decode_frame(bytes(frame), linktype)

    assert isinstance(result, Segment)
    assert (result.src_ip, result.dst_ip) == (src, dst)
    assert (result.src_port, result.dst_port) == (sport, dport)
    assert (result.transport, result.payload) == (transport, payload)
