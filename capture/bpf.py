"""The kernel socket filter of the capture agent: accept DNS responses, drop the rest.

The agent reads frames from an ``AF_PACKET`` socket bound to ``ETH_P_ALL``; without
a filter every frame on the node would be copied to user space. ``PROGRAM`` is a
classic BPF program, shipped compiled (no libpcap, no tcpdump at run time), that
lets through exactly the frames that can carry a DNS *response*:

* the interface has an Ethernet header: ``ARPHRD_ETHER`` (physical NICs, veth,
  bridges, bonds, vxlan, macvlan) or ``ARPHRD_LOOPBACK`` (Linux gives loopback a
  zeroed 14-byte Ethernet header with a real EtherType, so it parses like any
  Ethernet frame). Other link types are dropped: a tun device or WireGuard
  (``ARPHRD_NONE``), IPIP/GRE tunnels and InfiniBand start the frame with
  something else, and reading them at Ethernet offsets would accept garbage;
* EtherType IPv4 or IPv6, optionally behind one 802.1Q (0x8100) or 802.1ad
  (0x88a8) tag written in the frame;
* IPv4: protocol UDP or TCP, fragment offset 0 (only a first fragment carries
  the transport header; later fragments of a response cannot be matched by
  port and are dropped), and a sane header length (IHL >= 5);
* IPv6: UDP or TCP after the fixed 40-byte header and up to three extension
  headers (hop-by-hop, routing, destination options, and the Fragment header
  of a first fragment; a later fragment is dropped, as for IPv4);
* source port 53.

A frame shorter than any offset the program reads is dropped: classic BPF ends
the program with return value 0 on an out-of-bounds load.

On accept the program returns ``SNAP_LENGTH`` (256 KiB): the kernel keeps up
to that many bytes of the frame, more than a full 64 KiB IP packet with its
link header, so every DNS-over-TCP segment, and GRO-merged runs of them up to
256 KiB, reach the parser uncut. (BIG TCP, where enabled, may merge beyond
that; the cut then shows up as a truncated DNS message, not as a lost frame.)

VLAN tags. On receive, Linux moves the outer VLAN tag out of the frame into
``skb->vlan_tci`` before any packet socket sees it (hardware offload, or
``skb_vlan_untag`` in ``__netif_receive_skb_core``); on transmit the tag may be
metadata or in the frame depending on the driver's offloads. A tag moved to
metadata leaves an untagged frame whose EtherType at offset 12 is IPv4/IPv6,
so the untagged path matches it; a tag still in the frame (transmit without
offload, or the inner tag of a QinQ frame whose outer tag was stripped) is
matched by the one-tag path. The filter accepts a response whatever its VLAN,
so it never needs to know *whether* a tag was stripped, and the ancillary load
``SKF_AD_VLAN_TAG_PRESENT`` (which libpcap uses only because its ``vlan``
keyword must match tagged frames alone) is not used. Two tags both written in
the frame (QinQ transmitted without offload) and the pre-standard 0x9100 TPID
are not followed.

IPv6 extension headers. Classic BPF has no loops, so the walk over a chain of
extension headers is unrolled: :data:`MAX_IPV6_EXTENSIONS` steps, each reading
the header's next-header byte and stepping X over it (its length byte for
hop-by-hop, routing and destination options, 8 bytes for a Fragment header),
with the two values kept in scratch memory. libpcap's ``ip6 and udp`` stops at
the fixed header; this program does not, because middleboxes and some
networks do add options, and the Fragment header is what a fragmented UDP
response carries (rare: resolvers advertise an EDNS buffer of 1232 bytes, DNS
flag day 2020, and fall back to TCP). First fragments, IPv4 and IPv6, reach
the agent, whose frame decoder counts them as fragments (there is no
reassembly); later fragments and longer chains are dropped here, uncounted:
a filter's drops appear in no counter, ``PACKET_STATISTICS`` included. The
program is written with labels (:func:`assemble`) and shipped as the
resolved instructions; ``tests/unit/capture/test_bpf.py`` runs it on crafted
frames against the rules above written independently, and
``test_bpf_kernel.py`` attaches it to real sockets.

Attach order. Frames queued on the socket before the filter was attached never
went through it. ``attach_filter`` closes that gap the way libpcap does: it
first attaches a drop-everything program, drains the queue, then attaches
``PROGRAM``; every frame read afterwards has passed the filter. Opening the
socket with protocol 0 and binding to ``ETH_P_ALL`` only after attaching avoids
the queue altogether.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import Final

Instruction = tuple[int, int, int, int]
"""One classic BPF instruction, ``(code, jt, jf, k)`` as in ``struct sock_filter``."""

SNAP_LENGTH: Final = 262144
"""Bytes of an accepted frame the kernel keeps: a 64 KiB packet fits four times."""

SO_ATTACH_FILTER: Final = 26
"""From ``<asm-generic/socket.h>`` (x86, arm, arm64, riscv, s390, powerpc, mips)."""

# Ancillary load: ``ld [SKF_AD_OFF + SKF_AD_HATYPE]`` puts dev->type (ARPHRD_*) in A.
_SKF_AD_OFF: Final = 0xFFFFF000  # -0x1000 as the unsigned k field
_SKF_AD_HATYPE: Final = 28

MAX_IPV6_EXTENSIONS: Final = 3
"""IPv6 extension headers the program steps over before UDP or TCP (unrolled)."""

_Line = str | tuple[int, str | int, str | int, int]
"""A label, or an instruction whose jump targets may be labels."""


def assemble(lines: list[_Line]) -> tuple[Instruction, ...]:
    """Instructions from ``lines``, labels resolved to the relative offsets BPF uses.

    ``ja`` (code 0x05) takes its label in ``k``'s place: ``(0x05, 0, 0, "label")``
    is written ``(0x05, "label", 0, 0)``.
    """
    labels: dict[str, int] = {}
    code: list[tuple[int, str | int, str | int, int]] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(code)
        else:
            code.append(line)

    def offset(target: str | int, pc: int) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - (pc + 1)
        assert distance >= 0, f"backward jump to {target}"
        return distance

    program: list[Instruction] = []
    for pc, (op, jt, jf, k) in enumerate(code):
        if op == 0x05:  # ja: the target is the k field
            program.append((op, 0, 0, offset(jt, pc)))
        else:
            jump_true, jump_false = offset(jt, pc), offset(jf, pc)
            assert jump_true < 256 and jump_false < 256, "a conditional jump is 8 bits"
            program.append((op, jump_true, jump_false, k))
    return tuple(program)


_LD_HATYPE, _LDX_IMM, _LDH_ABS, _LDB_IND, _LDH_IND = 0x20, 0x01, 0x28, 0x50, 0x48
_JEQ, _JGE, _JSET, _JA, _RET = 0x15, 0x35, 0x45, 0x05, 0x06
_AND, _LSH, _ADD_IMM, _ADD_X, _TAX, _TXA = 0x54, 0x64, 0x04, 0x0C, 0x07, 0x87
_LD_MEM, _ST = 0x60, 0x02
_NEXT, _LENGTH = 0, 1  # scratch memory: the next header, an extension's length


def _ipv6_steps(count: int) -> list[_Line]:
    """Step over up to ``count`` extension headers; A holds the next header, X its offset."""
    lines: list[_Line] = []
    for i in range(count):
        lines += [
            f"v6_{i}",
            (_JEQ, "port", 0, 17),  # UDP
            (_JEQ, "port", 0, 6),  # TCP
            (_JEQ, f"frag_{i}", 0, 44),  # fragment
            (_JEQ, f"ext_{i}", 0, 0),  # hop-by-hop options
            (_JEQ, f"ext_{i}", 0, 43),  # routing
            (_JEQ, f"ext_{i}", "drop", 60),  # destination options
            f"ext_{i}",  # next header at +0, length at +1 in 8-byte units past the first 8
            (_LDB_IND, 0, 0, 1),
            (_ADD_IMM, 0, 0, 1),
            (_LSH, 0, 0, 3),
            (_ST, 0, 0, _LENGTH),
            (_LDB_IND, 0, 0, 0),
            (_ST, 0, 0, _NEXT),
            (_LD_MEM, 0, 0, _LENGTH),
            (_ADD_X, 0, 0, 0),
            (_TAX, 0, 0, 0),
            (_LD_MEM, 0, 0, _NEXT),
            (_JA, f"v6_{i + 1}", 0, 0),
            f"frag_{i}",  # 8 bytes; only the first fragment (offset 0) carries the ports
            (_LDH_IND, 0, 0, 2),
            (_JSET, "drop", 0, 0xFFF8),
            (_LDB_IND, 0, 0, 0),
            (_ST, 0, 0, _NEXT),
            (_TXA, 0, 0, 0),
            (_ADD_IMM, 0, 0, 8),
            (_TAX, 0, 0, 0),
            (_LD_MEM, 0, 0, _NEXT),
            (_JA, f"v6_{i + 1}", 0, 0),
        ]
    return [
        *lines,
        f"v6_{count}",
        (_JEQ, "port", 0, 17),
        (_JEQ, "port", "drop", 6),
    ]


PROGRAM: Final[tuple[Instruction, ...]] = assemble(
    [
        # Link type: only interfaces whose frames start with an Ethernet header.
        (_LD_HATYPE, 0, 0, _SKF_AD_OFF + _SKF_AD_HATYPE),
        (_JEQ, "ether", 0, 1),  # ARPHRD_ETHER
        (_JEQ, "ether", "drop", 772),  # ARPHRD_LOOPBACK
        # EtherType, with X = offset of the IP header (14 untagged, 18 behind one tag).
        "ether",
        (_LDX_IMM, 0, 0, 14),
        (_LDH_ABS, 0, 0, 12),
        (_JEQ, "tagged", 0, 0x8100),  # 802.1Q
        (_JEQ, "tagged", "untagged", 0x88A8),  # 802.1ad
        "tagged",
        (_LDX_IMM, 0, 0, 18),
        (_LDH_ABS, 0, 0, 16),
        "untagged",
        (_JEQ, "ipv4", 0, 0x0800),
        (_JEQ, "ipv6", "drop", 0x86DD),
        # IPv4: UDP or TCP, first fragment only, then X = offset of the transport header.
        "ipv4",
        (_LDB_IND, 0, 0, 9),  # protocol
        (_JEQ, "v4_fragment", 0, 17),
        (_JEQ, "v4_fragment", "drop", 6),
        "v4_fragment",
        (_LDH_IND, 0, 0, 6),  # flags and fragment offset
        (_JSET, "drop", 0, 0x1FFF),
        (_LDB_IND, 0, 0, 0),  # version and IHL
        (_AND, 0, 0, 0x0F),
        (_JGE, 0, "drop", 5),
        (_LSH, 0, 0, 2),  # header length in bytes
        (_ADD_X, 0, 0, 0),
        (_TAX, 0, 0, 0),
        (_JA, "port", 0, 0),
        # IPv6: X past the fixed header, A its next header; up to three extensions.
        "ipv6",
        (_LDB_IND, 0, 0, 6),
        (_ST, 0, 0, _NEXT),
        (_TXA, 0, 0, 0),
        (_ADD_IMM, 0, 0, 40),
        (_TAX, 0, 0, 0),
        (_LD_MEM, 0, 0, _NEXT),
        *_ipv6_steps(MAX_IPV6_EXTENSIONS),
        # The transport header at X: its source port.
        "port",
        (_LDH_IND, 0, 0, 0),
        (_JEQ, "accept", "drop", 53),
        # Verdicts: keep the whole frame, or none of it.
        "accept",
        (_RET, 0, 0, SNAP_LENGTH),
        "drop",
        (_RET, 0, 0, 0),
    ]
)

_DROP_ALL: Final[tuple[Instruction, ...]] = ((0x06, 0, 0, 0),)  # ret #0

_SOCK_FILTER: Final = struct.Struct("=HBBI")  # struct sock_filter, 8 bytes
_SOCK_FPROG: Final = struct.Struct("@HP")  # struct sock_fprog, native padding


def pack_program(program: tuple[Instruction, ...] = PROGRAM) -> bytes:
    """Return ``program`` as the array of ``struct sock_filter`` the kernel reads.

    Each instruction is 8 bytes in host byte order: u16 code, u8 jt, u8 jf, u32 k.
    """
    return b"".join(_SOCK_FILTER.pack(*insn) for insn in program)


def attach_filter(sock: socket.socket) -> None:
    """Attach ``PROGRAM`` to ``sock`` so the kernel drops all but DNS responses.

    ``sock`` is a Linux ``AF_PACKET`` socket. Frames already queued on it are
    discarded (see the module docstring), so every frame read after this
    returns has passed the filter; a pending ``ENETDOWN`` (bound to an
    interface that is down) is consumed with them. Raises ``OSError`` if the
    kernel refuses the program.
    """
    _set_program(sock, _DROP_ALL)
    _drain(sock)
    _set_program(sock, PROGRAM)


def _set_program(sock: socket.socket, program: tuple[Instruction, ...]) -> None:
    # struct sock_fprog holds a pointer to the instructions; the kernel copies
    # them during setsockopt, so the buffer only has to outlive the call.
    instructions = ctypes.create_string_buffer(pack_program(program))
    fprog = _SOCK_FPROG.pack(len(program), ctypes.addressof(instructions))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _drain(sock: socket.socket) -> None:
    # With the drop-all program attached nothing new is queued, so this ends.
    # Non-blocking for the duration: with a timeout set, Python would first wait
    # for the socket to become readable, i.e. the whole timeout on an empty queue.
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.recv(1)
            except BlockingIOError:
                return
            except OSError as error:
                # A socket bound to an interface that is (or went) down reports
                # ENETDOWN once, ahead of its queue; the frames behind it remain.
                if error.errno != errno.ENETDOWN:
                    raise
    finally:
        sock.settimeout(timeout)
