"""capture/_dnsfast.c reads the usual DNS frame as the Python decoders do, or not at all.

``read_plain_dns`` takes only an untagged Ethernet frame of IPv4 without options,
unfragmented, whole, carrying UDP from port 53 whose payload is the usual DNS
response, and returns None for every other frame, which ``decode_frame`` and
``parse_response`` (the reference) then decide. So whenever it answers, its
answer is theirs.
"""

from __future__ import annotations

import struct

import pytest
from helpers.dnsmessages import realistic_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from capture.dnswire import DnsResponse, parse_response
from capture.frames import LINKTYPE_ETHERNET, Segment, decode_frame, read_plain_dns

NOT_BUILT = "capture/_dnsfast.c was not built: `pip install -e .` needs gcc"
pytestmark = pytest.mark.skipif(read_plain_dns is None, reason=NOT_BUILT)

MESSAGES = realistic_messages()


def in_python(frame: bytes) -> tuple[Segment, DnsResponse] | None:
    """What the Python decoders make of ``frame``, when it is a response from port 53."""
    segment = decode_frame(frame, LINKTYPE_ETHERNET)
    if isinstance(segment, str) or segment.src_port != 53 or segment.transport != "udp":
        return None
    response = parse_response(segment.payload, native=False)
    return None if isinstance(response, str) else (segment, response)


def in_c(frame: bytes | memoryview) -> tuple[Segment, DnsResponse] | None:
    assert read_plain_dns is not None
    return read_plain_dns(frame)


def assert_agrees(frame: bytes) -> None:
    """The C path either hands ``frame`` back, or reads it as Python does."""
    fast = in_c(frame)
    if fast is not None:
        assert fast == in_python(frame)


def frame(payload: bytes, *, sport: int = 53, src: str = "10.96.0.10") -> bytes:
    return bytes(Ether() / IP(src=src, dst="10.1.0.7") / UDP(sport=sport, dport=40000) / payload)


def usual() -> bytes:
    """A usual response: one A question, its addresses as pointers to the name."""
    found: bytes = next(m for m in MESSAGES if _read_in_c_alone(m))
    return found


def _read_in_c_alone(message: bytes) -> bool:
    from capture import _dnsfast

    return _dnsfast.parse(message) is not None


def test_the_usual_frame_is_read_in_c_as_python_reads_it() -> None:
    sent = frame(usual())
    found = in_c(sent)
    assert found is not None
    assert found == in_python(sent)
    assert isinstance(found[0], Segment) and isinstance(found[1], DnsResponse)


def test_a_frame_read_from_the_capture_ring_as_a_memoryview_reads_the_same() -> None:
    sent = frame(usual())
    assert in_c(memoryview(bytearray(b"x" + sent))[1:]) == in_python(sent)


def test_ethernet_padding_after_the_packet_is_not_payload() -> None:
    sent = frame(usual()) + b"\0" * 30
    found = in_c(sent)
    assert found is not None and found == in_python(sent)


def test_every_realistic_message_in_a_frame_is_read_alike_or_left_to_python() -> None:
    taken = 0
    for message in MESSAGES:
        sent = frame(message)
        assert_agrees(sent)
        taken += in_c(sent) is not None
    assert taken == sum(_read_in_c_alone(m) for m in MESSAGES) > 0


def test_addresses_share_the_python_decoders_strings() -> None:
    sent = frame(usual(), src="10.96.0.99")
    fast, slow = in_c(sent), decode_frame(sent, LINKTYPE_ETHERNET)
    assert fast is not None and not isinstance(slow, str)
    assert fast[0].src_ip is slow.src_ip and fast[0].dst_ip is slow.dst_ip


UNUSUAL = {
    "a VLAN tag": lambda p: bytes(
        Ether() / Dot1Q(vlan=7) / IP(src="10.96.0.10") / UDP(sport=53) / p
    ),
    "IPv4 options": lambda p: bytes(
        Ether() / IP(src="10.96.0.10", options=b"\x01\x01\x01\x00") / UDP(sport=53) / p
    ),
    "a first fragment": lambda p: bytes(
        Ether() / IP(src="10.96.0.10", flags="MF") / UDP(sport=53) / p
    ),
    "IPv6": lambda p: bytes(Ether() / IPv6(src="fd00::53") / UDP(sport=53) / p),
    "TCP": lambda p: bytes(
        Ether()
        / IP(src="10.96.0.10")
        / TCP(sport=53, flags="PA")
        / Raw(struct.pack("!H", len(p)) + p)
    ),
    "another source port": lambda p: frame(p, sport=5353),
    "a UDP length past the packet": lambda p: bytes(
        Ether() / IP(src="10.96.0.10") / UDP(sport=53, len=len(p) + 40) / p
    ),
    "a capture cut short": lambda p: frame(p)[:-3],
}


@pytest.mark.parametrize("make", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_any_other_frame_is_left_to_python(make: object) -> None:
    sent = make(usual())  # type: ignore[operator]
    assert in_c(sent) is None
    assert_agrees(sent)


@pytest.mark.parametrize("at", range(42))
def test_every_change_to_one_byte_of_the_headers_is_read_alike_or_left_to_python(
    at: int,
) -> None:
    sent = frame(usual())
    for value in {0, 1, 0x35, 0x44, 0x45, 0x46, 0x55, 0xFF, sent[at] - 1, sent[at] + 1}:
        changed = bytearray(sent)
        changed[at] = value & 0xFF
        assert_agrees(bytes(changed))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_frames_are_read_alike_or_left_to_python(data: st.DataObject) -> None:
    sent = bytearray(frame(data.draw(st.sampled_from(MESSAGES))))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(sent) - 1))
        sent[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(sent)))
    assert_agrees(bytes(sent[:cut]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_read_alike_or_left_to_python(sent: bytes) -> None:
    assert_agrees(sent)
