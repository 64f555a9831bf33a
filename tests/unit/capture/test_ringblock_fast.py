"""capture/_dnsfast_ring.c walks a receive ring block as capture.packetring.read_block does.

``read_plain_block`` hands each usual frame's segment and response to one sink
and every other frame to another, in the block's order, with the same capture
times, and gives the same frame count and soundness as the walk in Python
(the reference), whatever the block's headers say. A folder taking a block
either way ends with the same window and the same counters.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from helpers.dnsmessages import realistic_messages
from helpers.ringblocks import BLOCK_DESC, block, set_frame_field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from callmap.counters import Counters
from capture.dnsfold import DnsFolder
from capture.frames import read_plain_block, read_plain_dns
from capture.packetring import read_block

NOT_BUILT = "capture/_dnsfast.c was not built: `pip install -e .` needs gcc"
pytestmark = pytest.mark.skipif(read_plain_block is None, reason=NOT_BUILT)

MESSAGES = realistic_messages()
Handed = list[tuple[str, Any, float]]
SIZE = 1 << 16


def frame(payload: bytes, *, sport: int = 53, client: str = "10.1.0.7") -> bytes:
    return bytes(
        Ether() / IP(src="10.96.0.10", dst=client) / UDP(sport=sport, dport=40000) / payload
    )


def mixed_frames() -> list[tuple[bytes, int, int]]:
    """Twelve responses over IPv4 to twelve clients, and among them three frames that
    are never the usual one (another source port, IPv6, not IP); distinct capture times."""
    frames = []
    for i in range(12):
        message = MESSAGES[i % len(MESSAGES)]
        frames.append((frame(message, client=f"10.1.0.{i + 1}"), 1_796_000_000 + i, i * 7919))
    frames.insert(3, (frame(MESSAGES[0], sport=5353), 1_796_000_100, 1))
    frames.insert(6, (bytes(Ether() / IPv6(src="fd00::53") / UDP(sport=53) / MESSAGES[1]), 5, 9))
    frames.insert(9, (b"\x00" * 20, 6, 999_999_999))
    return frames


def walk_in_python(data: bytearray, start: int, size: int) -> tuple[Handed, int, bool, int]:
    handed: Handed = []

    def sink(taken: memoryview, ts: float) -> None:
        plain = read_plain_dns(taken) if read_plain_dns else None
        handed.append(("usual", plain, ts) if plain else ("other", bytes(taken), ts))

    count, sound = read_block(memoryview(data), start, size, sink)
    return handed, count, sound, sum(kind == "usual" for kind, _, _ in handed)


def walk_in_c(data: bytearray, start: int, size: int) -> tuple[Handed, int, bool, int]:
    assert read_plain_block is not None
    handed: Handed = []
    count, sound, usual = read_plain_block(
        memoryview(data),
        start,
        size,
        lambda segment, response, ts: handed.append(("usual", (segment, response), ts)),
        lambda taken, ts: handed.append(("other", bytes(taken), ts)),
    )
    return handed, count, sound, usual


def assert_walks_alike(data: bytearray, start: int = 0, size: int = SIZE) -> None:
    assert walk_in_c(data, start, size) == walk_in_python(data, start, size)


def test_usual_and_other_frames_are_handed_over_in_order_with_their_times() -> None:
    handed, count, sound, usual = walk_in_c(block(mixed_frames(), size=SIZE), 0, SIZE)
    assert (count, sound) == (15, True)
    assert usual == sum(bool(read_plain_dns and read_plain_dns(f)) for f, _, _ in mixed_frames())
    assert 0 < usual <= 12
    assert [kind for kind, _, _ in handed].count("other") == 15 - usual
    assert handed[9] == ("other", b"\x00" * 20, 6.999999999)
    assert_walks_alike(block(mixed_frames(), size=SIZE))


def test_blocks_are_read_where_they_start_in_the_ring() -> None:
    ring = bytearray(4096) + block(mixed_frames()[:4], size=4096)
    handed, count, _, _ = walk_in_c(ring, 4096, 4096)
    assert count == 4 and handed
    assert_walks_alike(ring, 4096, 4096)


@pytest.mark.parametrize(
    ("frame_index", "at", "value"),
    [
        (1, 12, SIZE),  # tp_snaplen running past the block
        (0, 0, SIZE + 1),  # tp_next_offset outside the block
        (2, 0, 8),  # tp_next_offset back into the block header
        (1, 24, 20),  # tp_mac inside the frame header
    ],
)
def test_unsound_headers_end_the_block_where_python_ends_it(
    frame_index: int, at: int, value: int
) -> None:
    data = block(mixed_frames(), size=SIZE)
    set_frame_field(data, frame_index, at, value, "=H" if at == 24 else "=I")
    assert not walk_in_c(data, 0, SIZE)[2]  # unsound
    assert_walks_alike(data)


def test_a_count_beyond_the_frames_chained_and_a_block_past_the_ring_are_unsound() -> None:
    data = block(mixed_frames(), size=SIZE)
    struct.pack_into("=I", data, 12, 40)  # num_pkts
    assert walk_in_c(data, 0, SIZE)[1:3] == (15, False)
    assert_walks_alike(data)
    assert walk_in_c(block(mixed_frames(), size=SIZE), 0, 2 * SIZE) == ([], 0, False, 0)
    assert walk_in_c(bytearray(40), 0, 40) == ([], 0, False, 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_change_to_a_block_walks_alike(data: st.DataObject) -> None:
    changed = block(mixed_frames()[: data.draw(st.integers(0, 15))], size=SIZE)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, SIZE - 1) | st.integers(0, BLOCK_DESC + 300))
        changed[at] = data.draw(st.integers(0, 255))
    assert_walks_alike(changed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_walks_alike_and_never_past_the_block(garbage: bytes) -> None:
    inside = garbage.replace(b"\xff", b"\xfe")
    data = bytearray(inside) + b"\xff" * 600  # after the block: never handed over
    handed, count, _, _ = walk_in_c(data, 0, len(inside))
    assert count == len(handed)
    assert not any(kind == "other" and b"\xff" in taken for kind, taken, _ in handed)
    assert_walks_alike(data, 0, len(inside))


def test_a_sink_that_raises_stops_the_walk_with_its_error() -> None:
    assert read_plain_block is not None

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the folder")

    with pytest.raises(RuntimeError, match="a bug in the folder"):
        read_plain_block(memoryview(block(mixed_frames(), size=SIZE)), 0, SIZE, broken, broken)


def test_a_folder_takes_a_block_in_c_as_it_takes_its_frames_in_python() -> None:
    data = block(mixed_frames(), size=SIZE)
    folded = []
    for native in (True, False):
        counters = Counters()
        folder = DnsFolder(cluster="c", node="n", counters=counters, native=native)
        assert folder.take_block(memoryview(data), 0, SIZE) == (15, True)
        records = folder.flush(now=1_796_000_200.0)
        folded.append((records, counters.totals()))
    assert folded[0] == folded[1]
    assert folded[0][0]
