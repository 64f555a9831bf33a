"""The shipped socket filter, run on crafted frames by a classic BPF interpreter.

The interpreter below follows the Linux semantics the program relies on: a load
past the end of the frame ends the program with 0, the ancillary load
``hatype`` reads the interface's ARPHRD type. Frames are built with scapy.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from capture.bpf import PROGRAM, SNAP_LENGTH, Instruction, pack_program

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 65534
SKF_AD_OFF = 0xFFFFF000
SKF_AD_HATYPE = 28
U32 = 0xFFFFFFFF


class _OutOfBounds(Exception):
    """The program read past the end of the packet (the kernel drops it)."""


_ALU = {
    0x00: lambda a, v: a + v,
    0x10: lambda a, v: a - v,
    0x20: lambda a, v: a * v,
    0x30: lambda a, v: a // v,
    0x40: lambda a, v: a | v,
    0x50: lambda a, v: a & v,
    0x60: lambda a, v: a << (v & 31),
    0x70: lambda a, v: a >> (v & 31),
    0x80: lambda a, v: -a,
    0x90: lambda a, v: a % v,
    0xA0: lambda a, v: a ^ v,
}
_JUMP = {
    0x10: lambda a, v: a == v,
    0x20: lambda a, v: a > v,
    0x30: lambda a, v: a >= v,
    0x40: lambda a, v: bool(a & v),
}


def run_filter(program: Sequence[Instruction], frame: bytes, hatype: int = ARPHRD_ETHER) -> int:
    """Run a classic BPF program on ``frame``; return what the kernel would keep."""

    def load(offset: int, size: int) -> int:
        if offset >= SKF_AD_OFF:
            assert offset == SKF_AD_OFF + SKF_AD_HATYPE, f"ancillary load {offset:#x}"
            return hatype
        if offset + size > len(frame):
            raise _OutOfBounds
        return int.from_bytes(frame[offset : offset + size], "big")

    a = x = pc = 0
    mem = [0] * 16
    try:
        while True:
            code, jt, jf, k = program[pc]
            pc += 1
            cls, op, mode = code & 0x07, code & 0xF0, code & 0xE0
            size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            src = x if code & 0x08 else k
            if cls in (0x00, 0x01):  # LD, LDX
                if mode == 0x00:
                    value = k
                elif mode == 0x20:
                    value = load(k, size)
                elif mode == 0x40:
                    value = load((x + k) & U32, size)
                elif mode == 0x60:
                    value = mem[k]
                elif mode == 0x80:
                    value = len(frame)
                else:  # MSH: ldxb 4*([k]&0xf)
                    value = 4 * (load(k, 1) & 0x0F)
                if cls == 0x00:
                    a = value
                else:
                    x = value
            elif cls == 0x02:  # ST
                mem[k] = a
            elif cls == 0x03:  # STX
                mem[k] = x
            elif cls == 0x04:  # ALU
                if op in (0x30, 0x90) and src == 0:
                    return 0  # division by zero aborts the program
                a = _ALU[op](a, src) & U32
            elif cls == 0x05:  # JMP
                if op == 0x00:
                    pc += k
                else:
                    pc += jt if _JUMP[op](a, src) else jf
            elif cls == 0x06:  # RET
                return a if code & 0x18 == 0x10 else k
            elif code & 0xF8 == 0x00:  # MISC TAX
                x = a
            else:  # MISC TXA
                a = x
    except _OutOfBounds:
        return 0


def verdict(packet: Packet | bytes, hatype: int = ARPHRD_ETHER) -> bool:
    kept = run_filter(PROGRAM, bytes(packet), hatype)
    assert kept in (0, SNAP_LENGTH)
    return kept == SNAP_LENGTH


ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="10.0.0.53", dst="10.0.0.7")
V6 = IPv6(src="fd00::53", dst="fd00::7")
ANSWER = DNS(
    id=7,
    qr=1,
    qd=DNSQR(qname="db.shop.svc.cluster.local"),
    an=DNSRR(rrname="db.shop.svc.cluster.local", rdata="10.96.0.10"),
)
QUESTION = DNS(id=7, rd=1, qd=DNSQR(qname="db.shop.svc.cluster.local"))


def tcp_dns(message: DNS) -> bytes:
    wire = bytes(message)
    return struct.pack("!H", len(wire)) + wire


def test_program_passes_the_kernels_static_checks() -> None:
    assert 0 < len(PROGRAM) <= 4096
    for pc, (code, jt, jf, k) in enumerate(PROGRAM):
        assert 0 <= code <= 0xFFFF and 0 <= jt <= 255 and 0 <= jf <= 255 and 0 <= k <= U32
        if code & 0x07 == 0x05:  # jumps go forward and land inside the program
            targets = [k] if code & 0xF0 == 0x00 else [jt, jf]
            assert all(pc + 1 + t < len(PROGRAM) for t in targets)
    assert PROGRAM[-1][0] & 0x07 == 0x06


def test_packed_program_is_eight_bytes_per_instruction_in_host_order() -> None:
    packed = pack_program()
    assert len(packed) == 8 * len(PROGRAM)
    assert list(struct.iter_unpack("=HBBI", packed)) == list(PROGRAM)


def test_accepted_frames_are_kept_whole_even_as_big_tcp_segments() -> None:
    assert SNAP_LENGTH >= 65535 + 14 + 4  # a 64 KiB-MTU frame with a VLAN tag
    assert run_filter(PROGRAM, bytes(ETH / V4 / UDP(sport=53) / ANSWER)) == SNAP_LENGTH


@pytest.mark.parametrize("ip", [V4, V6], ids=["ipv4", "ipv6"])
def test_accepts_a_udp_response_from_port_53(ip: Packet) -> None:
    assert verdict(ETH / ip / UDP(sport=53, dport=41000) / ANSWER)


@pytest.mark.parametrize("ip", [V4, V6], ids=["ipv4", "ipv6"])
def test_accepts_tcp_segments_from_port_53(ip: Packet) -> None:
    assert verdict(ETH / ip / TCP(sport=53, dport=41000, flags="PA") / tcp_dns(ANSWER))
    assert verdict(ETH / ip / TCP(sport=53, dport=41000, flags="SA"))


@pytest.mark.parametrize("tag", [Dot1Q(vlan=42), Dot1AD(vlan=42)], ids=["802.1q", "802.1ad"])
@pytest.mark.parametrize("ip", [V4, V6], ids=["ipv4", "ipv6"])
def test_accepts_a_response_behind_one_vlan_tag(tag: Packet, ip: Packet) -> None:
    assert verdict(ETH / tag / ip / UDP(sport=53) / ANSWER)
    assert verdict(ETH / tag / ip / TCP(sport=53) / tcp_dns(ANSWER))


def test_accepts_the_inner_tag_of_a_qinq_frame_whose_outer_tag_the_kernel_stripped() -> None:
    # What a packet socket sees after skb_vlan_untag moved the 802.1ad tag to metadata.
    assert verdict(ETH / Dot1Q(vlan=7) / V4 / UDP(sport=53) / ANSWER)


def test_does_not_follow_two_tags_written_in_the_frame() -> None:
    assert not verdict(ETH / Dot1AD(vlan=1) / Dot1Q(vlan=7) / V4 / UDP(sport=53) / ANSWER)


def test_accepts_responses_on_loopback_whose_ethernet_header_is_zeroed() -> None:
    lo = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00")
    assert verdict(lo / V4 / UDP(sport=53) / ANSWER, hatype=ARPHRD_LOOPBACK)
    assert verdict(lo / V6 / UDP(sport=53) / ANSWER, hatype=ARPHRD_LOOPBACK)


def test_drops_every_frame_of_an_interface_without_an_ethernet_header() -> None:
    assert not verdict(ETH / V4 / UDP(sport=53) / ANSWER, hatype=ARPHRD_NONE)
    assert not verdict(V4 / UDP(sport=53) / ANSWER, hatype=ARPHRD_NONE)


def test_finds_the_ports_after_ipv4_options() -> None:
    with_options = IP(src="10.0.0.53", dst="10.0.0.7", options=[IPOption_NOP()] * 8)
    assert verdict(ETH / with_options / UDP(sport=53) / ANSWER)
    assert not verdict(ETH / with_options / UDP(sport=41000, dport=53) / QUESTION)


def test_drops_an_ipv4_header_length_below_the_minimum() -> None:
    frame = bytearray(bytes(ETH / V4 / UDP(sport=53) / ANSWER))
    frame[14] = 0x44  # IHL 4: the "ports" would be read from inside the IP header
    assert not verdict(bytes(frame))


@pytest.mark.parametrize("ip", [V4, V6], ids=["ipv4", "ipv6"])
def test_drops_queries_to_port_53(ip: Packet) -> None:
    assert not verdict(ETH / ip / UDP(sport=41000, dport=53) / QUESTION)
    assert not verdict(ETH / ip / TCP(sport=41000, dport=53, flags="PA") / tcp_dns(QUESTION))
    assert not verdict(ETH / Dot1Q(vlan=42) / ip / UDP(sport=41000, dport=53) / QUESTION)


@pytest.mark.parametrize("sport", [5353, 853, 0, 41000])
@pytest.mark.parametrize("ip", [V4, V6], ids=["ipv4", "ipv6"])
def test_drops_other_source_ports(ip: Packet, sport: int) -> None:
    assert not verdict(ETH / ip / UDP(sport=sport, dport=53) / ANSWER)
    assert not verdict(ETH / ip / TCP(sport=sport, dport=53) / tcp_dns(ANSWER))


def test_drops_arp() -> None:
    assert not verdict(ETH / ARP(psrc="10.0.0.53", pdst="10.0.0.7"))


def test_drops_icmp_errors_that_quote_a_response() -> None:
    # The quoted datagram carries source port 53 at the offset a UDP header would.
    quoted = IP(src="10.0.0.53", dst="10.0.0.7") / UDP(sport=53, dport=41000)
    assert not verdict(ETH / V4 / ICMP(type=3, code=3) / quoted)
    assert not verdict(ETH / V4 / ICMP() / Raw(b"\x00\x35" * 8))
    assert not verdict(ETH / V6 / ICMPv6EchoRequest(data=b"\x00\x35" * 8))
    assert not verdict(ETH / V6 / ICMPv6ND_NS(tgt="fd00::7"))


def test_accepts_the_first_fragment_of_a_fragmented_ipv4_response() -> None:
    first = IP(src="10.0.0.53", dst="10.0.0.7", flags="MF", frag=0, proto=17)
    assert verdict(ETH / first / UDP(sport=53) / ANSWER)


@pytest.mark.parametrize("offset", [1, 185, 0x1FFF])
def test_drops_later_ipv4_fragments_even_if_their_data_looks_like_port_53(offset: int) -> None:
    later = IP(src="10.0.0.53", dst="10.0.0.7", flags="MF", frag=offset, proto=17)
    assert not verdict(ETH / later / Raw(b"\x00\x35\x00\x35" * 4))
    last = IP(src="10.0.0.53", dst="10.0.0.7", frag=offset, proto=6)
    assert not verdict(ETH / last / Raw(b"\x00\x35\x00\x35" * 4))


def test_accepts_ipv6_responses_behind_extension_headers() -> None:
    assert verdict(ETH / V6 / IPv6ExtHdrHopByHop() / UDP(sport=53) / ANSWER)
    assert verdict(ETH / V6 / IPv6ExtHdrFragment(m=1, offset=0) / UDP(sport=53) / ANSWER)
    assert verdict(ETH / V6 / IPv6ExtHdrDestOpt() / TCP(sport=53) / tcp_dns(ANSWER))
    routed = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrFragment(m=1)
    assert verdict(ETH / V6 / routed / UDP(sport=53) / ANSWER)
    padded = IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 20)])  # a longer header
    assert verdict(ETH / Dot1Q(vlan=3) / V6 / padded / UDP(sport=53) / ANSWER)


def test_drops_ipv6_later_fragments_and_chains_longer_than_it_steps_over() -> None:
    assert not verdict(ETH / V6 / IPv6ExtHdrFragment(offset=185) / Raw(b"\x00\x35" * 8))
    assert not verdict(ETH / V6 / IPv6ExtHdrHopByHop() / UDP(sport=54) / ANSWER)
    four = IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
    assert not verdict(ETH / V6 / four / UDP(sport=53) / ANSWER)


@pytest.mark.parametrize(
    ("packet", "needed"),
    [
        (ETH / V4 / UDP(sport=53) / ANSWER, 14 + 20 + 2),
        (ETH / V6 / TCP(sport=53) / tcp_dns(ANSWER), 14 + 40 + 2),
        (ETH / Dot1Q(vlan=3) / V4 / TCP(sport=53) / tcp_dns(ANSWER), 18 + 20 + 2),
        (ETH / Dot1AD(vlan=3) / V6 / UDP(sport=53) / ANSWER, 18 + 40 + 2),
    ],
    ids=["udp4", "tcp6", "vlan-tcp4", "vlan-udp6"],
)
def test_drops_frames_cut_before_the_source_port(packet: Packet, needed: int) -> None:
    frame = bytes(packet)
    for length in range(len(frame) + 1):
        assert verdict(frame[:length]) == (length >= needed), length


def spec_accepts(frame: bytes, hatype: int) -> bool:
    """The module docstring's rules, written independently of the program."""
    try:
        if hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            return False
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        l3 = 14
        if ethertype in (0x8100, 0x88A8):
            (ethertype,) = struct.unpack_from("!H", frame, 16)
            l3 = 18
        if ethertype == 0x0800:
            proto, fragment = frame[l3 + 9], struct.unpack_from("!H", frame, l3 + 6)[0]
            ihl = frame[l3] & 0x0F
            if proto not in (6, 17) or fragment & 0x1FFF or ihl < 5:
                return False
            l4 = l3 + 4 * ihl
        elif ethertype == 0x86DD:
            header, l4 = frame[l3 + 6], l3 + 40
            for _ in range(3):  # up to three extension headers
                if header in (6, 17):
                    break
                if header == 44:  # fragment: 8 bytes, the first fragment only
                    if struct.unpack_from("!H", frame, l4 + 2)[0] & 0xFFF8:
                        return False
                    header, l4 = frame[l4], l4 + 8
                elif header in (0, 43, 60):
                    header, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
                else:
                    return False
            if header not in (6, 17):
                return False
        else:
            return False
        return bool(struct.unpack_from("!H", frame, l4)[0] == 53)
    except (IndexError, struct.error):
        return False


def frames() -> st.SearchStrategy[bytes]:
    # Port 53 often enough that accepted frames are common, neighbours to catch off-by-ones.
    word = st.sampled_from([53, 53, 53, 0, 0x35 << 8, 52, 54, 5353, 0x0800, 0xFFFF])
    tag = st.sampled_from([b"", b"\x81\x00\x00\x2a", b"\x88\xa8\x00\x2a", b"\x91\x00\x00\x2a"])
    ethertype = st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x1234])
    proto = st.sampled_from([6, 17, 1, 58, 0, 44, 43, 60])
    ihl = st.sampled_from([0x45, 0x46, 0x4F, 0x44, 0x40, 0x60])
    fragment = st.sampled_from([0, 0x2000, 0x4000, 0x0001, 0x2001, 0x1FFF])
    ipv4 = st.builds(
        lambda v, f, p, opts, sport, dport: (
            bytes([v, 0])
            + b"\0\0\0\0"
            + struct.pack("!HBB", f, 64, p)
            + b"\0" * 10
            + opts
            + struct.pack("!HH", sport, dport)
        ),
        ihl,
        fragment,
        proto,
        st.binary(max_size=40),
        word,
        word,
    )
    extension = st.builds(
        lambda nh, length, fill, frag: bytes([nh, length]) + struct.pack("!H", frag) + fill,
        proto,
        st.sampled_from([0, 0, 1, 2]),
        st.binary(min_size=4, max_size=28),
        st.sampled_from([0, 1, 8, 0xFFF8]),
    )
    ipv6 = st.builds(
        lambda p, exts, sport, dport: (
            b"\x60"
            + b"\0" * 5
            + bytes([p, 64])
            + b"\0" * 32
            + b"".join(exts)
            + struct.pack("!HH", sport, dport)
        ),
        proto,
        st.lists(extension, max_size=4),
        word,
        word,
    )
    return st.builds(
        lambda t, e, l3, extra, cut: (b"\x02" * 12 + t + struct.pack("!H", e) + l3 + extra)[:cut],
        tag,
        ethertype,
        st.one_of(ipv4, ipv6, st.binary(max_size=64)),
        st.binary(max_size=8),
        st.integers(0, 200),
    ) | st.binary(max_size=80)


@given(frames(), st.sampled_from([ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, 768]))
def test_agrees_with_the_written_rules_on_generated_frames(frame: bytes, hatype: int) -> None:
    assert verdict(frame, hatype) == spec_accepts(frame, hatype)
