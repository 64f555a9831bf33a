"""The layout of a TPACKET_V3 receive ring: blocks of captured frames, read in place.

A packet socket with a receive ring (``PACKET_RX_RING``, version
``TPACKET_V3``) has the kernel write frames into memory shared with the
process, many frames to a block, and hand over a whole block at a time: one
wakeup per block instead of a ``recv`` per frame. This module is the pure half:
it knows where a block says it is ready, where its frames and their capture
times are, and how to give the block back; :class:`capture.sniffer.RxRing`
maps the memory and waits for blocks.

The layouts (``linux/if_packet.h``), in the machine's byte order:

- a block starts with ``struct tpacket_block_desc``: version, offset to the
  private area, then ``tpacket_hdr_v1``: block status (``TP_STATUS_USER`` once
  the kernel hands it over; the reader writes ``TP_STATUS_KERNEL`` back to
  return it), number of frames, offset of the first frame, ...;
- each frame starts with ``struct tpacket3_hdr``: offset of the next frame (0
  for the last), seconds and nanoseconds of the capture, the length captured
  and on the wire, status, and the offset of the link-layer header from the
  frame's start.

It promises: :func:`read_block` never reads outside the block it is given,
whatever the headers say (a frame that would is the end of the block, and the
block is counted as bad, never raised); frames are handed over as views of
the ring, valid until the block is released, so the consumer copies what it
keeps.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

TPACKET_V3: Final = 2
PACKET_VERSION: Final = 10
PACKET_RX_RING: Final = 5
TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1

BLOCK_HEADER_SIZE: Final = 48
"""``struct tpacket_block_desc`` with its ``tpacket_hdr_v1``."""
FRAME_HEADER_SIZE: Final = 48
"""``struct tpacket3_hdr``, padding included."""
_STATUS_AT: Final = 8
"""Where ``block_status`` lies in a block."""

# block_status, num_pkts, offset_to_first_pkt
_unpack_block = struct.Struct("=III").unpack_from
# tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac
_unpack_frame = struct.Struct("=IIIIIIH").unpack_from
_pack_status = struct.Struct("=I").pack_into
REQUEST: Final = struct.Struct("=IIIIIII")
"""``struct tpacket_req3``: block size and count, frame size and count, the
block retire timeout (ms), private area size, feature word."""

FrameSink = Callable[[memoryview, float], None]
"""Takes one frame (a view into the ring) and its capture time (epoch seconds)."""
BlockTaker = Callable[[memoryview, int, int], tuple[int, bool]]
"""Takes the ready block at ``start`` (``size`` bytes) and gives what :func:`read_block`
gives: its frames and whether its headers were sound."""


def ring_request(block_size: int, blocks: int, retire_ms: int, frame_size: int = 2048) -> bytes:
    """The ``PACKET_RX_RING`` option value for a ring of ``blocks`` blocks.

    In version 3 frames take the room they need within a block; the frame size
    and count only have to agree with the block size and count."""
    return REQUEST.pack(
        block_size, blocks, frame_size, block_size // frame_size * blocks, retire_ms, 0, 0
    )


def block_ready(ring: memoryview, start: int) -> bool:
    """True once the kernel has handed the block at ``start`` to the reader."""
    status: int = _unpack_block(ring, start + _STATUS_AT)[0]
    return bool(status & TP_STATUS_USER)


def release_block(ring: memoryview, start: int) -> None:
    """Give the block at ``start`` back to the kernel, to be filled again."""
    _pack_status(ring, start + _STATUS_AT, TP_STATUS_KERNEL)


def read_block(ring: memoryview, start: int, size: int, sink: FrameSink) -> tuple[int, bool]:
    """Hand every frame of the ready block at ``start`` (``size`` bytes) to ``sink``;
    return how many frames it held and whether its headers were all sound (False:
    a header pointed outside the block, and the frames after it were skipped)."""
    end = start + size
    if size < BLOCK_HEADER_SIZE or end > len(ring):
        return 0, False
    _status, count, first = _unpack_block(ring, start + _STATUS_AT)
    pos = start + first
    for taken in range(count):
        if pos < start + BLOCK_HEADER_SIZE or pos + FRAME_HEADER_SIZE > end:
            return taken, False
        following, seconds, nanoseconds, captured, _wire, _status, mac = _unpack_frame(ring, pos)
        frame_start = pos + mac
        frame_end = frame_start + captured
        if mac < FRAME_HEADER_SIZE or frame_end > end:
            return taken, False
        sink(ring[frame_start:frame_end], seconds + nanoseconds * 1e-9)
        if not following:
            return taken + 1, taken + 1 == count
        pos += following
    return count, True
