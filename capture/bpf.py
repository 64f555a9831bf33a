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
* IPv6: next header UDP or TCP *directly after the fixed 40-byte header*;
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

IPv6 extension headers. Classic BPF has no loops, so a chain of extension
headers of unknown length cannot be walked; the program accepts UDP/TCP only
directly after the fixed header, like libpcap's ``ip6 and udp``. A response
behind an extension header is dropped. DNS servers do not add hop-by-hop,
routing or destination options to responses; the one that does occur is the
Fragment header of a fragmented UDP response, and such responses are rare
because resolvers advertise an EDNS buffer of 1232 bytes (DNS flag day 2020)
and fall back to TCP. So IPv4 first fragments reach the agent, whose frame
decoder counts them as fragments (there is no reassembly), while IPv6
fragments are dropped here, uncounted: a filter's drops appear in no counter,
``PACKET_STATISTICS`` included.

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

# Jump offsets are relative to the next instruction; the comment on each line is
# tcpdump -d style with absolute targets (ACCEPT is 29, DROP is 30).
PROGRAM: Final[tuple[Instruction, ...]] = (
    # Link type: only interfaces whose frames start with an Ethernet header.
    (0x20, 0, 0, _SKF_AD_OFF + _SKF_AD_HATYPE),  # 0  ld  hatype
    (0x15, 1, 0, 0x00000001),  # 1  jeq #1 (ARPHRD_ETHER)       jt 3   jf 2
    (0x15, 0, 27, 0x00000304),  # 2  jeq #772 (ARPHRD_LOOPBACK) jt 3   jf 30
    # EtherType, with X = offset of the IP header (14 untagged, 18 behind one tag).
    (0x01, 0, 0, 0x0000000E),  # 3  ldx #14
    (0x28, 0, 0, 0x0000000C),  # 4  ldh [12]
    (0x15, 1, 0, 0x00008100),  # 5  jeq #0x8100 (802.1Q)      jt 7   jf 6
    (0x15, 0, 2, 0x000088A8),  # 6  jeq #0x88a8 (802.1ad)     jt 7   jf 9
    (0x01, 0, 0, 0x00000012),  # 7  ldx #18
    (0x28, 0, 0, 0x00000010),  # 8  ldh [16]
    (0x15, 1, 0, 0x00000800),  # 9  jeq #0x0800 (IPv4)        jt 11  jf 10
    (0x15, 13, 19, 0x000086DD),  # 10 jeq #0x86dd (IPv6)      jt 24  jf 30
    # IPv4: UDP or TCP, first fragment only, then X = offset of the transport header.
    (0x50, 0, 0, 0x00000009),  # 11 ldb [x + 9]   protocol
    (0x15, 1, 0, 0x00000011),  # 12 jeq #17 (UDP)             jt 14  jf 13
    (0x15, 0, 16, 0x00000006),  # 13 jeq #6 (TCP)             jt 14  jf 30
    (0x48, 0, 0, 0x00000006),  # 14 ldh [x + 6]   flags and fragment offset
    (0x45, 14, 0, 0x00001FFF),  # 15 jset #0x1fff             jt 30  jf 16
    (0x50, 0, 0, 0x00000000),  # 16 ldb [x + 0]   version and IHL
    (0x54, 0, 0, 0x0000000F),  # 17 and #0xf
    (0x35, 0, 11, 0x00000005),  # 18 jge #5                   jt 19  jf 30
    (0x64, 0, 0, 0x00000002),  # 19 lsh #2        header length in bytes
    (0x0C, 0, 0, 0x00000000),  # 20 add x
    (0x07, 0, 0, 0x00000000),  # 21 tax
    (0x48, 0, 0, 0x00000000),  # 22 ldh [x + 0]   source port
    (0x15, 5, 6, 0x00000035),  # 23 jeq #53                   jt 29  jf 30
    # IPv6: UDP or TCP right after the fixed header, source port 53.
    (0x50, 0, 0, 0x00000006),  # 24 ldb [x + 6]   next header
    (0x15, 1, 0, 0x00000011),  # 25 jeq #17 (UDP)             jt 27  jf 26
    (0x15, 0, 3, 0x00000006),  # 26 jeq #6 (TCP)              jt 27  jf 30
    (0x48, 0, 0, 0x00000028),  # 27 ldh [x + 40]  source port
    (0x15, 0, 1, 0x00000035),  # 28 jeq #53                   jt 29  jf 30
    # Verdicts: keep the whole frame, or none of it.
    (0x06, 0, 0, SNAP_LENGTH),  # 29 ret #262144  ACCEPT
    (0x06, 0, 0, 0x00000000),  # 30 ret #0       DROP
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
