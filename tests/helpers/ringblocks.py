"""TPACKET_V3 ring blocks as the kernel writes them (``linux/if_packet.h``), for tests.

Written from the kernel's structs, field by field at their offsets, not from
:mod:`capture.packetring`'s own formats:

    struct tpacket_block_desc { __u32 version; __u32 offset_to_priv;
        struct tpacket_hdr_v1 { __u32 block_status; __u32 num_pkts;
            __u32 offset_to_first_pkt; __u32 blk_len; __aligned_u64 seq_num;
            struct tpacket_bd_ts ts_first_pkt, ts_last_pkt; } }      48 bytes
    struct tpacket3_hdr { __u32 tp_next_offset; __u32 tp_sec; __u32 tp_nsec;
        __u32 tp_snaplen; __u32 tp_len; __u32 tp_status; __u16 tp_mac;
        __u16 tp_net; struct tpacket_hdr_variant1 hv1; __u8 tp_padding[8]; }
                                                                      48 bytes
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

TP_STATUS_USER = 1
TP_STATUS_BLK_TMO = 1 << 5
BLOCK_DESC = 48
FRAME_HDR = 48
MAC_OFFSET = 82  # what the kernel uses: the aligned header, a sockaddr_ll, and a NET_IP_ALIGN


def block(
    frames: Sequence[tuple[bytes, int, int]],
    size: int = 4096,
    status: int = TP_STATUS_USER | TP_STATUS_BLK_TMO,
) -> bytearray:
    """A block of ``size`` bytes holding ``frames`` (bytes, seconds, nanoseconds)."""
    data = bytearray(size)
    struct.pack_into("=II", data, 0, 3, 48)  # version, offset_to_priv
    struct.pack_into("=IIII", data, 8, status, len(frames), BLOCK_DESC, 0)
    pos = BLOCK_DESC
    for i, (frame, seconds, nanoseconds) in enumerate(frames):
        length = MAC_OFFSET + len(frame)
        following = (length + 15) // 16 * 16 if i < len(frames) - 1 else 0
        struct.pack_into("=I", data, pos, following)
        struct.pack_into("=III", data, pos + 4, seconds, nanoseconds, len(frame))
        struct.pack_into("=I", data, pos + 16, len(frame))  # tp_len
        struct.pack_into("=I", data, pos + 20, TP_STATUS_USER)
        struct.pack_into("=HH", data, pos + 24, MAC_OFFSET, MAC_OFFSET + 14)
        data[pos + MAC_OFFSET : pos + MAC_OFFSET + len(frame)] = frame
        pos += following
    struct.pack_into("=I", data, 20, pos)  # blk_len
    return data


def block_status(data: bytearray | memoryview, start: int = 0) -> int:
    """The status word of the block at ``start``."""
    return int(struct.unpack_from("=I", data, start + 8)[0])


def set_frame_field(data: bytearray, frame: int, at: int, value: int, fmt: str = "=I") -> None:
    """Overwrite one field (``at`` bytes into the header) of the ``frame``-th frame."""
    pos = BLOCK_DESC
    for _ in range(frame):
        pos += struct.unpack_from("=I", data, pos)[0]
    struct.pack_into(fmt, data, pos + at, value)
