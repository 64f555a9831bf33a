"""Builders of DNS messages for the dnswire tests: real servers' answers and hand-made wire."""

from __future__ import annotations

import ipaddress
import struct

import dns.message
import dns.rrset

SERVICE = "web.shop.svc.cluster.local"


def answer(qname: str, qtype: str, *records: tuple[str, int, str, str], **kw: object) -> bytes:
    """A response as a real server writes it (dnspython compresses names)."""
    query = dns.message.make_query(qname, qtype)
    response = dns.message.make_response(query)
    for owner, ttl, rtype, value in records:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, value))
    wire: bytes = response.to_wire(**kw)
    return wire


def header(flags: int = 0x8180, qd: int = 1, an: int = 0, msg_id: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, 0, 0)


def name(text: str) -> bytes:
    """An uncompressed wire name from dotted text (no escapes)."""
    labels = [label.encode() for label in text.split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def raw_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def question(qname: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def record(owner: bytes, rtype: int, rdata: bytes, ttl: int = 30, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def a(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


QNAME_AT = 12  # the question name always starts right after the header


def framed(message: bytes) -> bytes:
    """``message`` as DNS over TCP sends it: after its two-byte length."""
    return struct.pack("!H", len(message)) + message


def realistic_messages() -> list[bytes]:
    """A service's A and AAAA answers, and an external name behind a CNAME chain."""
    return [
        answer(SERVICE, "A", (SERVICE + ".", 30, "A", "10.96.0.12")),
        answer(SERVICE, "AAAA", (SERVICE + ".", 30, "AAAA", "fd00::12")),
        answer(
            "api.example.com",
            "A",
            ("api.example.com.", 300, "CNAME", "api.cdn.example.net."),
            ("api.cdn.example.net.", 60, "CNAME", "edge.cdn.example.net."),
            ("edge.cdn.example.net.", 20, "A", "192.0.2.1"),
            ("edge.cdn.example.net.", 20, "A", "192.0.2.2"),
        ),
    ]
