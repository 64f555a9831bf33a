"""Packed IP addresses as the wire writes them. Pure.

The kernel hands capture addresses as 4 or 16 bytes in network order: in
socket tables (:mod:`capture.procnet`, after undoing the byte order /proc
prints them in), in sock_diag answers (:mod:`capture.inetdiag`) and in
connection-tracking events (:mod:`capture.ctnetlink`). The wire contract
writes an IP in the canonical text of :func:`socket.inet_ntop`, and an
IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, what a dual-stack socket
shows for an IPv4 peer) as the plain IPv4 address.
"""

from __future__ import annotations

import socket

V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
"""The first 12 bytes of an IPv4-mapped IPv6 address."""


def packed_address(raw: bytes) -> str:
    """The wire's text of a 4-byte (IPv4) or 16-byte (IPv6) address in network order."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == V4_MAPPED_PREFIX:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)
