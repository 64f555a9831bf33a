"""sock_diag answers as the kernel lays them out, for the INET_DIAG parser's tests.

Written from the kernel's headers field by field (``include/uapi/linux/netlink.h``,
``inet_diag.h``, ``tcp.h``), not from the parser's own structs, so that a wrong
offset in either shows up as a disagreement.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

SOCK_DIAG_BY_FAMILY, NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 20, 1, 2, 3
TCPDIAG_GETSOCK = 18  # the older request, and the type of the messages answering it
NLM_F_MULTI = 0x2
INET_DIAG_INFO, INET_DIAG_SHUTDOWN, INET_DIAG_SKV6ONLY, INET_DIAG_CGROUP_ID = 2, 8, 11, 21
INET_DIAG_SOCKOPT = 22
ESTABLISHED, TIME_WAIT, LISTEN = 1, 6, 10

# struct tcp_info's fields in declaration order: (name, size). The bit fields
# share the 7th and 8th bytes; they are written as two plain bytes here.
TCP_INFO_FIELDS: tuple[tuple[str, int], ...] = (
    *((name, 1) for name in ("state", "ca_state", "retransmits", "probes", "backoff")),
    ("options", 1), ("wscale", 1), ("app_limited", 1),
    *((name, 4) for name in ("rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost")),
    *((name, 4) for name in ("retrans", "fackets", "last_data_sent", "last_ack_sent")),
    *((name, 4) for name in ("last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh")),
    *((name, 4) for name in ("rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss")),
    *((name, 4) for name in ("reordering", "rcv_rtt", "rcv_space", "total_retrans")),
    ("pacing_rate", 8), ("max_pacing_rate", 8), ("bytes_acked", 8), ("bytes_received", 8),
    ("segs_out", 4), ("segs_in", 4),
    *((name, 4) for name in ("notsent_bytes", "min_rtt", "data_segs_in", "data_segs_out")),
    ("delivery_rate", 8), ("busy_time", 8), ("rwnd_limited", 8), ("sndbuf_limited", 8),
    ("delivered", 4), ("delivered_ce", 4), ("bytes_sent", 8), ("bytes_retrans", 8),
    ("dsack_dups", 4), ("reord_seen", 4), ("rcv_ooopack", 4), ("snd_wnd", 4),
)  # fmt: skip
TCP_INFO_3_14 = 104  # up to total_retrans: the layout of kernels 2.6 to 3.14
TCP_INFO_4_1 = 136  # up to bytes_received
TCP_INFO_4_2 = 144  # up to segs_in
TCP_INFO_6_1 = sum(size for _, size in TCP_INFO_FIELDS)  # 232, up to snd_wnd
TCP_INFO_6_18 = 280  # what kernel 6.18 sends; the fields past snd_wnd are zeros here


def _native(fmt: str, *values: int) -> bytes:
    return struct.pack("=" + fmt, *values)


def tcp_info(size: int = TCP_INFO_6_18, **fields: int) -> bytes:
    """A ``struct tcp_info`` of ``size`` bytes (cut where the kernel's would end),
    every field zero but ``fields``."""
    out = bytearray(max(size, TCP_INFO_6_1))
    offset = 0
    for name, width in TCP_INFO_FIELDS:
        value = fields.pop(name, 0)
        out[offset : offset + width] = value.to_bytes(width, sys.byteorder)
        offset += width
    if fields:
        raise TypeError(f"no such tcp_info field: {sorted(fields)}")
    return bytes(out[:size])


def attribute(kind: int, payload: bytes) -> bytes:
    """An rtattr, padded to 4 bytes (the padding is not in its length)."""
    length = 4 + len(payload)
    return _native("HH", length, kind) + payload + bytes(-length % 4)


def nlmsg(kind: int, payload: bytes, *, flags: int = NLM_F_MULTI, seq: int = 1) -> bytes:
    """A netlink message: header (len, type, flags, seq, pid) and payload, padded."""
    length = 16 + len(payload)
    return _native("IHHII", length, kind, flags, seq, 0) + payload + bytes(-length % 4)


def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def diag_msg(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    *,
    state: int = ESTABLISHED,
    family: int | None = None,
    uid: int = 1000,
    inode: int = 4242,
) -> bytes:
    """A ``struct inet_diag_msg``. The family is the addresses' unless given; an
    IPv4 address in an AF_INET6 message is written IPv4-mapped."""
    v6 = ":" in src or ":" in dst
    if family is None:
        family = socket.AF_INET6 if v6 else socket.AF_INET

    def field(ip: str) -> bytes:  # __be32 idiag_src[4]: IPv4 in the first word
        packed = _packed(ip)
        if family == socket.AF_INET6 and len(packed) == 4:
            packed = bytes(10) + b"\xff\xff" + packed
        return packed.ljust(16, b"\0")

    sockid = (
        struct.pack("!HH", sport, dport)
        + field(src)
        + field(dst)
        + _native("I", 0)  # idiag_if
        + _native("II", 0xDEAD, 0xBEEF)  # idiag_cookie
    )
    head = bytes([family, state, 0, 0])  # family, state, timer, retrans
    tail = _native("IIIII", 0, 0, 0, uid, inode)  # expires, rqueue, wqueue, uid, inode
    return head + sockid + tail


def socket_message(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    *,
    info: bytes | None = None,
    extra: bool = True,
    msg_type: int = SOCK_DIAG_BY_FAMILY,
    **msg: int,
) -> bytes:
    """One socket of a dump, with the attributes the kernel sends unasked
    (shutdown, cgroup id, socket options; v6-only for AF_INET6) when ``extra``,
    and ``info`` as INET_DIAG_INFO, last, as this kernel orders them."""
    body = diag_msg(src, sport, dst, dport, **msg)
    if extra:
        body += attribute(INET_DIAG_SHUTDOWN, b"\0")
        if body[0] == socket.AF_INET6:
            body += attribute(INET_DIAG_SKV6ONLY, b"\0")
        body += attribute(INET_DIAG_CGROUP_ID, _native("Q", 7))
        body += attribute(INET_DIAG_SOCKOPT, b"\0\0")
    if info is not None:
        body += attribute(INET_DIAG_INFO, info)
    return nlmsg(msg_type, body)


def done(status: int = 0) -> bytes:
    """NLMSG_DONE, which ends a dump; its payload is the dump's status (0 or -errno)."""
    return nlmsg(NLMSG_DONE, _native("i", status))


def error(errno: int) -> bytes:
    """NLMSG_ERROR: -errno, then the header of the request it answers."""
    return nlmsg(NLMSG_ERROR, _native("i", -errno) + _native("IHHII", 72, 20, 0x301, 1, 0), flags=0)
