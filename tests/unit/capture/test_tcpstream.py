"""DNS over TCP across segments: every message whole, once, or counted as lost."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from capture.frames import Segment
from capture.tcpstream import TcpStreams

SERVER, CLIENT = ("10.96.0.10", 53), ("10.1.0.10", 40001)


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def segment(payload: bytes, seq: int, client: tuple[str, int] = CLIENT) -> Segment:
    return Segment(SERVER[0], client[0], SERVER[1], client[1], "tcp", payload, seq)


def segments(stream: bytes, size: int, first_seq: int = 1000) -> list[Segment]:
    return [segment(stream[i : i + size], first_seq + i) for i in range(0, len(stream), size)]


LONG = bytes(range(256)) * 12  # a 3,072-byte answer: three segments at a 1,400-byte MSS


def test_a_message_over_several_segments_comes_out_whole_once_complete() -> None:
    streams = TcpStreams()
    taken = [streams.take(s, 1.0) for s in segments(framed(LONG), 1400)]
    assert [t.messages for t in taken] == [[], [], [LONG]]
    assert all(t.lost == 0 and not t.duplicate for t in taken)


def test_several_messages_in_one_segment_and_across_them() -> None:
    streams = TcpStreams()
    stream = framed(b"one", b"two", LONG, b"four")
    out = [m for s in segments(stream, 1000) for m in streams.take(s, 1.0).messages]
    assert out == [b"one", b"two", LONG, b"four"]


def test_a_segment_seen_twice_adds_nothing_and_an_overlap_adds_its_tail() -> None:
    streams = TcpStreams()
    first, second, third = segments(framed(LONG), 1400)
    streams.take(first, 1.0)
    assert streams.take(first, 1.0).duplicate  # the same segment on another interface
    overlapping = segment(first.payload[-100:] + second.payload, first.seq + 1300)
    assert streams.take(overlapping, 1.0).messages == []
    assert streams.take(third, 1.0).messages == [LONG]


def test_a_gap_loses_the_unfinished_message_and_never_makes_one_up() -> None:
    streams = TcpStreams()
    first, _lost, third = segments(framed(LONG), 1400)
    streams.take(first, 1.0)
    after_gap = streams.take(third, 1.0)
    assert after_gap.lost == 1
    assert LONG not in after_gap.messages
    nxt = streams.take(segment(framed(b"next"), third.seq + len(third.payload)), 1.0)
    assert nxt.messages in ([b"next"], [])  # read afresh; whatever it is, LONG is gone


def test_flows_are_kept_apart_and_bounded() -> None:
    streams = TcpStreams(max_flows=2)
    half = framed(LONG)[:100]
    for port in (1, 2, 3):
        streams.take(segment(half, 0, ("10.1.0.10", port)), 1.0)
    assert len(streams) == 2
    assert streams.expire(now=100.0) == 2 and len(streams) == 0  # idle: forgotten, counted


def test_whatever_a_length_prefix_claims_completes_by_65537_bytes() -> None:
    streams = TcpStreams()
    garbage = b"\xff\xff" + b"x" * 65535  # read afresh mid-stream: a claim of 65,535 bytes
    out = [m for s in segments(garbage, 1400, first_seq=0) for m in streams.take(s, 1.0).messages]
    assert out == [b"x" * 65535]  # handed whole to the parser, which rejects it; nothing kept
    assert streams.expire(now=100.0) == 0


def test_sequence_numbers_wrap() -> None:
    streams = TcpStreams()
    stream = framed(LONG)
    parts = segments(stream, 1400, first_seq=(1 << 32) - 700)
    parts = [segment(p.payload, p.seq % (1 << 32)) for p in parts]
    assert [m for p in parts for m in streams.take(p, 1.0).messages] == [LONG]


@given(st.binary(max_size=3000), st.lists(st.integers(1, 600), min_size=1, max_size=20))
def test_any_bytes_cut_anywhere_come_out_only_as_the_messages_their_prefixes_frame(
    stream: bytes, cuts: list[int]
) -> None:
    streams, pos, out = TcpStreams(), 0, []
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if pos >= len(stream):
            break
        out += streams.take(segment(stream[pos : pos + size], pos), 1.0).messages
        pos += size
    assert stream.startswith(framed(*out))  # whole messages, in order, nothing made up
