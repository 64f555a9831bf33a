"""Reading TPACKET_V3 ring blocks: every frame with its capture time, nothing outside
the block, whatever its headers say."""

from __future__ import annotations

import struct

import pytest
from helpers.ringblocks import block, block_status, set_frame_field
from hypothesis import given
from hypothesis import strategies as st

from capture.packetring import (
    TP_STATUS_KERNEL,
    block_ready,
    read_block,
    release_block,
    ring_request,
)

FRAMES = [(b"\x02" * 60, 1_796_000_000, 250_000_000), (b"\x04" * 1500, 1_796_000_001, 5)]


def taken(data: bytearray, start: int = 0, size: int = 4096) -> tuple[list, int, bool]:  # type: ignore[type-arg]
    frames: list[tuple[bytes, float]] = []
    count, sound = read_block(
        memoryview(data), start, size, lambda f, ts: frames.append((bytes(f), ts))
    )
    return frames, count, sound


def test_every_frame_of_a_block_is_handed_over_with_its_capture_time() -> None:
    frames, count, sound = taken(block(FRAMES))
    assert (count, sound) == (2, True)
    assert [f for f, _ in frames] == [b"\x02" * 60, b"\x04" * 1500]
    assert [ts for _, ts in frames] == pytest.approx([1_796_000_000.25, 1_796_000_001.000000005])


def test_a_block_is_ready_once_handed_to_the_reader_and_released_back() -> None:
    data = block(FRAMES)
    assert block_ready(memoryview(data), 0)
    release_block(memoryview(data), 0)
    assert block_status(data) == TP_STATUS_KERNEL
    assert not block_ready(memoryview(data), 0)


def test_blocks_are_read_where_they_start_in_the_ring() -> None:
    ring = bytearray(4096) + block(FRAMES[:1])
    assert not block_ready(memoryview(ring), 0)
    frames, count, sound = taken(ring, start=4096)
    assert (count, sound, frames[0][0]) == (1, True, FRAMES[0][0])


def test_an_empty_block_hands_over_nothing() -> None:
    assert taken(block([])) == ([], 0, True)


def test_a_frame_running_past_the_block_ends_it_unsound() -> None:
    data = block(FRAMES)
    set_frame_field(data, 1, 12, 4000)  # tp_snaplen of the second frame
    frames, count, sound = taken(data)
    assert (len(frames), count, sound) == (1, 1, False)


def test_a_next_offset_outside_the_block_ends_it_unsound() -> None:
    data = block(FRAMES)
    set_frame_field(data, 0, 0, 10_000)  # tp_next_offset of the first frame
    frames, _, sound = taken(data)
    assert (len(frames), sound) == (1, False)


def test_a_frame_count_beyond_the_frames_chained_is_unsound() -> None:
    data = block(FRAMES)
    struct.pack_into("=I", data, 12, 3)  # num_pkts
    frames, count, sound = taken(data)
    assert (len(frames), count, sound) == (2, 2, False)


def test_a_block_larger_than_the_ring_is_not_read() -> None:
    assert taken(block(FRAMES), size=8192) == ([], 0, False)


@given(st.binary(max_size=600))
def test_garbage_never_raises_nor_reads_outside_the_block(garbage: bytes) -> None:
    inside = garbage.replace(b"\xff", b"\xfe")
    data = bytearray(inside) + b"\xff" * 600  # after the block: never handed over
    frames, count, _ = taken(data, size=len(inside))
    assert count == len(frames)
    assert not any(b"\xff" in frame for frame, _ in frames)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
def test_any_frames_the_kernel_wrote_come_back_in_order(payloads: list[bytes]) -> None:
    frames, count, sound = taken(block([(p, 1, 0) for p in payloads], size=8192), size=8192)
    assert (count, sound) == (len(payloads), True)
    assert [f for f, _ in frames] == payloads


def test_the_request_asks_for_frames_that_fill_the_blocks() -> None:
    values = struct.unpack("=IIIIIII", ring_request(1 << 20, 16, 50))
    assert values == (1 << 20, 16, 2048, 512 * 16, 50, 0, 0)
