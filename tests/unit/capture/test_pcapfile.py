"""Reading pcap and pcapng files: what scapy writes, hand-built blocks, and broken files."""

from __future__ import annotations

import io
import math
import struct
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.packet import Packet
from scapy.utils import PcapNgWriter, PcapWriter, wrpcap

from callmap.errors import CallmapError
from capture.pcapfile import (
    PROBLEM_BAD_BLOCK_LENGTH,
    PROBLEM_BAD_BYTE_ORDER,
    PROBLEM_BAD_OPTIONS,
    PROBLEM_BAD_PACKET,
    PROBLEM_NOT_A_CAPTURE,
    PROBLEM_OVERSIZED,
    PROBLEM_READ_ERROR,
    PROBLEM_TRUNCATED,
    PROBLEM_UNKNOWN_INTERFACE,
    PROBLEM_UNSUPPORTED_VERSION,
    PROBLEMS,
    CapturedFrame,
    CaptureFileError,
    PcapReader,
)

ETHERNET, SLL, SLL2 = 1, 113, 276


def packets(count: int = 3, start: float = 1_700_000_000.0) -> list[Packet]:
    made = []
    for n in range(count):
        packet = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="10.0.0.53", dst="10.0.0.7")
            / UDP(sport=53, dport=40000 + n)
            / DNS(id=n, qr=1, qd=DNSQR(qname=f"svc{n}.shop.svc.cluster.local"))
        )
        packet.time = start + n + 0.25
        made.append(packet)
    return made


def read(data: bytes, **options: int) -> tuple[list[CapturedFrame], PcapReader]:
    reader = PcapReader(io.BytesIO(data), **options)
    return list(reader), reader


def read_path(path: Path) -> tuple[list[CapturedFrame], PcapReader]:
    with path.open("rb") as handle:
        reader = PcapReader(handle)
        return list(reader), reader


def assert_read_whole(reader: PcapReader) -> None:
    assert reader.error is None and not reader.problems


# --- pcap -------------------------------------------------------------------


def test_reads_back_an_ethernet_pcap_written_by_scapy(tmp_path: Path) -> None:
    written = packets()
    wrpcap(str(tmp_path / "eth.pcap"), written)
    frames, reader = read_path(tmp_path / "eth.pcap")
    assert_read_whole(reader)
    assert reader.format == "pcap" and reader.frames == 3
    assert [f.data for f in frames] == [bytes(p) for p in written]
    assert [f.linktype for f in frames] == [ETHERNET] * 3
    assert [f.timestamp for f in frames] == [float(p.time) for p in written]


def test_frames_unpack_as_timestamp_linktype_and_bytes(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "one.pcap"), packets(1))
    ((timestamp, linktype, frame),) = read_path(tmp_path / "one.pcap")[0]
    assert (timestamp, linktype) == (1_700_000_000.25, ETHERNET)
    assert frame[:6] == bytes.fromhex("020000000002")  # the destination MAC


@pytest.mark.parametrize("endianness", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nano", [False, True], ids=["microseconds", "nanoseconds"])
def test_reads_pcap_in_both_byte_orders_and_resolutions(
    tmp_path: Path, endianness: str, nano: bool
) -> None:
    written = packets()
    written[0].time = Decimal("1700000000.123456789")
    writer = PcapWriter(str(tmp_path / "x.pcap"), endianness=endianness, nano=nano)
    for packet in written:
        writer.write(packet)
    writer.close()
    frames, reader = read_path(tmp_path / "x.pcap")
    assert_read_whole(reader)
    assert [f.data for f in frames] == [bytes(p) for p in written]
    expected = 1_700_000_000.123456789 if nano else 1_700_000_000.123456
    assert frames[0].timestamp == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("layer", "linktype"), [(CookedLinux, SLL), (CookedLinuxV2, SLL2)], ids=["sll", "sll2"]
)
def test_reads_linux_cooked_captures_with_their_link_type(
    tmp_path: Path, layer: type[Packet], linktype: int
) -> None:
    written = [layer() / p[IP] for p in packets()]
    wrpcap(str(tmp_path / "cooked.pcap"), written)
    frames, reader = read_path(tmp_path / "cooked.pcap")
    assert_read_whole(reader)
    assert [(f.linktype, f.data) for f in frames] == [(linktype, bytes(p)) for p in written]


def test_link_type_ignores_the_fcs_bits_of_the_header() -> None:
    file = bytearray(pcap_file([b"\x02" * 20]))
    file[20:24] = struct.pack("<I", 0x1000_0000 | 0x0400_0000 | ETHERNET)  # FCS of 4 bytes
    frames, _ = read(bytes(file))
    assert frames[0].linktype == ETHERNET


def pcap_file(frames: list[bytes], order: str = "<", major: int = 2) -> bytes:
    out = struct.pack(order + "IHHiIII", 0xA1B2C3D4, major, 4, 0, 0, 262144, ETHERNET)
    for n, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1_700_000_000 + n, 0, len(frame), len(frame)) + frame
    return out


def test_an_unknown_pcap_major_version_is_refused() -> None:
    frames, reader = read(pcap_file([b"x" * 20], major=3))
    assert frames == [] and reader.problems == {PROBLEM_UNSUPPORTED_VERSION: 1}


def test_a_record_longer_than_the_limit_ends_the_file_without_reading_it() -> None:
    file = pcap_file([b"a" * 20, b"b" * 5000])
    frames, reader = read(file, max_record=4096)
    assert [f.data for f in frames] == [b"a" * 20]
    assert reader.error is not None and reader.error.reason == PROBLEM_OVERSIZED
    assert reader.error.offset == 24 + 16 + 20  # where the second record starts


# --- pcapng -----------------------------------------------------------------


def block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def section(order: str, major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1))


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def interface(order: str, linktype: int, snaplen: int = 0, options: bytes = b"") -> bytes:
    end = option(order, 0, b"") if options else b""
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options + end)


def enhanced(order: str, interface_id: int, ticks: int, data: bytes) -> bytes:
    header = struct.pack(
        order + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 6, header + data)


def simple(order: str, data: bytes, wirelen: int | None = None) -> bytes:
    wirelen = len(data) if wirelen is None else wirelen
    return block(order, 3, struct.pack(order + "I", wirelen) + data)


def test_reads_back_a_pcapng_written_by_scapy_with_one_interface_per_link_type(
    tmp_path: Path,
) -> None:
    ether, vlan, *_ = packets()
    vlan = Ether() / Dot1Q(vlan=5) / vlan[IP]
    sll, sll2 = CookedLinux() / ether[IP], CookedLinuxV2() / ether[IP]
    for packet, name in [(sll, "any"), (sll2, "any2")]:
        packet.time, packet.sniffed_on = 1_700_000_009.5, name
    written = [ether, vlan, sll, sll2]
    writer = PcapNgWriter(str(tmp_path / "x.pcapng"))
    for packet in written:
        writer.write(packet)
    writer.close()
    frames, reader = read_path(tmp_path / "x.pcapng")
    assert_read_whole(reader)
    assert reader.format == "pcapng"
    assert [f.linktype for f in frames] == [ETHERNET, ETHERNET, SLL, SLL2]
    assert [f.data for f in frames] == [bytes(p) for p in written]
    assert frames[0].timestamp == pytest.approx(float(ether.time), abs=1e-6)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_reads_pcapng_sections_in_either_byte_order(order: str) -> None:
    file = section(order) + interface(order, ETHERNET) + enhanced(order, 0, 1_500_000, b"frame")
    frames, reader = read(file)
    assert_read_whole(reader)
    assert frames == [CapturedFrame(1.5, ETHERNET, b"frame")]


@pytest.mark.parametrize(
    ("tsresol", "ticks"),
    [(b"", 10**6), (b"\x09", 10**9), (b"\x03", 10**3), (b"\x94", 2**20)],
    ids=["default-microseconds", "nanoseconds", "milliseconds", "binary-2^-20"],
)
def test_timestamps_follow_the_interfaces_resolution(tsresol: bytes, ticks: int) -> None:
    options = option("<", 9, tsresol) if tsresol else b""
    file = section("<") + interface("<", ETHERNET, options=options)
    file += enhanced("<", 0, 1_700_000_000 * ticks + ticks // 4, b"f")
    frames, _ = read(file)
    assert frames[0].timestamp == pytest.approx(1_700_000_000.25, abs=1e-6)


def test_timestamps_add_the_interfaces_offset() -> None:
    options = option("<", 14, struct.pack("<q", 1_700_000_000))
    file = section("<") + interface("<", ETHERNET, options=options)
    file += enhanced("<", 0, 250_000, b"f")
    assert read(file)[0][0].timestamp == 1_700_000_000.25


def test_packets_carry_the_link_type_of_their_interface_and_sections_renumber() -> None:
    file = section("<") + interface("<", ETHERNET) + interface("<", SLL2)
    file += enhanced("<", 1, 0, b"sll2") + enhanced("<", 0, 0, b"eth")
    file += section(">") + interface(">", SLL) + enhanced(">", 0, 0, b"sll")
    frames, reader = read(file)
    assert_read_whole(reader)
    assert [(f.linktype, f.data) for f in frames] == [
        (SLL2, b"sll2"),
        (ETHERNET, b"eth"),
        (SLL, b"sll"),
    ]


def test_simple_packets_have_no_timestamp_and_are_cut_at_the_snap_length() -> None:
    file = section("<") + interface("<", ETHERNET, snaplen=4) + simple("<", b"abcd", wirelen=1500)
    file += simple("<", b"xy")
    frames, reader = read(file)
    assert_read_whole(reader)
    assert [(f.linktype, f.data) for f in frames] == [(ETHERNET, b"abcd"), (ETHERNET, b"xy")]
    assert all(math.isnan(f.timestamp) for f in frames)


def test_reads_the_obsolete_packet_block() -> None:
    body = struct.pack("<HHIIII", 0, 7, 0, 2_000_000, 3, 3) + b"old"
    frames, reader = read(section("<") + interface("<", ETHERNET) + block("<", 2, body))
    assert_read_whole(reader)
    assert frames == [CapturedFrame(2.0, ETHERNET, b"old")]


def test_skips_blocks_it_does_not_use() -> None:
    name_resolution = block("<", 4, struct.pack("<HH", 0, 0))
    statistics = block("<", 5, b"\0" * 20)
    custom = block("<", 0x00000BAD, b"\xff" * 40)
    file = section("<") + name_resolution + interface("<", ETHERNET) + statistics + custom
    frames, reader = read(file + enhanced("<", 0, 0, b"kept"))
    assert_read_whole(reader)
    assert [f.data for f in frames] == [b"kept"]


def test_a_packet_of_an_undeclared_interface_is_skipped_and_counted() -> None:
    file = section("<") + interface("<", ETHERNET) + enhanced("<", 3, 0, b"lost")
    file += simple("<", b"ok") + enhanced("<", 0, 0, b"kept")
    frames, reader = read(file)
    assert [f.data for f in frames] == [b"ok", b"kept"]
    assert reader.problems == {PROBLEM_UNKNOWN_INTERFACE: 1} and reader.error is None


def test_a_packet_longer_than_its_block_is_skipped_and_counted() -> None:
    bad = block("<", 6, struct.pack("<IIIII", 0, 0, 0, 999, 999) + b"short")
    file = section("<") + interface("<", ETHERNET) + bad + enhanced("<", 0, 0, b"kept")
    frames, reader = read(file)
    assert [f.data for f in frames] == [b"kept"]
    assert reader.problems == {PROBLEM_BAD_PACKET: 1}


def test_broken_interface_options_are_counted_and_the_interface_kept() -> None:
    broken = struct.pack("<HH", 2, 200) + b"eth0"  # if_name claims 200 bytes
    file = section("<") + interface("<", SLL, options=broken) + enhanced("<", 0, 0, b"f")
    frames, reader = read(file)
    assert frames == [CapturedFrame(0.0, SLL, b"f")]
    assert reader.problems == {PROBLEM_BAD_OPTIONS: 1}


def test_a_block_whose_trailer_disagrees_ends_the_file() -> None:
    good = section("<") + interface("<", ETHERNET) + enhanced("<", 0, 0, b"one")
    bad = bytearray(enhanced("<", 0, 0, b"two"))
    bad[-4:] = struct.pack("<I", 99)
    frames, reader = read(good + bytes(bad) + enhanced("<", 0, 0, b"three"))
    assert [f.data for f in frames] == [b"one"]
    assert reader.error is not None and reader.error.reason == PROBLEM_BAD_BLOCK_LENGTH
    assert reader.error.offset == len(good)


def test_a_section_header_with_a_bad_byte_order_magic_ends_the_file() -> None:
    file = bytearray(section("<"))
    file[8:12] = b"\xde\xad\xbe\xef"
    assert read(bytes(file))[1].problems == {PROBLEM_BAD_BYTE_ORDER: 1}


def test_an_unknown_pcapng_major_version_is_refused() -> None:
    frames, reader = read(section("<", major=2) + interface("<", ETHERNET))
    assert frames == [] and reader.problems == {PROBLEM_UNSUPPORTED_VERSION: 1}


# --- broken files -----------------------------------------------------------


def test_a_file_that_is_no_capture_says_so() -> None:
    frames, reader = read(b"GET / HTTP/1.1\r\n\r\n")
    assert frames == []
    assert reader.problems == {PROBLEM_NOT_A_CAPTURE: 1}
    assert isinstance(reader.error, CaptureFileError) and isinstance(reader.error, CallmapError)
    assert str(reader.error) == "not_a_capture_file at byte 0: unknown magic number 47455420"


def test_an_empty_file_is_truncated() -> None:
    assert read(b"")[1].problems == {PROBLEM_TRUNCATED: 1}


def record_ends(file: bytes, first: int) -> list[int]:
    """Offsets where each pcap record ends, given where the first one starts."""
    ends, position = [], first
    while position < len(file):
        (caplen,) = struct.unpack_from("<I", file, position + 8)
        position += 16 + caplen
        ends.append(position)
    return ends


def test_a_pcap_cut_anywhere_yields_the_whole_records_and_says_where_it_broke(
    tmp_path: Path,
) -> None:
    wrpcap(str(tmp_path / "x.pcap"), packets(4))
    file = (tmp_path / "x.pcap").read_bytes()
    ends = record_ends(file, 24)
    for cut in [0, 3, 10, 24, 30, ends[0], ends[0] + 16, ends[1] - 1, ends[2] + 5, len(file)]:
        frames, reader = read(file[:cut])
        whole = [end for end in ends if end <= cut]
        assert len(frames) == len(whole), cut
        if cut in (24, *ends):
            assert_read_whole(reader)
        else:
            assert reader.problems == {PROBLEM_TRUNCATED: 1}, cut
            assert reader.error is not None
            assert reader.error.offset == (0 if cut < 24 else max([24, *whole])), cut


def test_a_pcapng_cut_anywhere_yields_the_whole_blocks_before_the_cut() -> None:
    blocks = [section(">"), interface(">", ETHERNET)]
    blocks += [enhanced(">", 0, n, bytes([n]) * (10 + n)) for n in range(4)]
    file = b"".join(blocks)
    ends = [sum(len(b) for b in blocks[: n + 1]) for n in range(len(blocks))]
    for cut in range(len(file) + 1):
        frames, reader = read(file[:cut])
        assert len(frames) == max(0, sum(end <= cut for end in ends) - 2), cut
        assert (reader.error is None) == (cut in ends), cut


class _Flaky(io.RawIOBase):
    """Gives at most ``step`` bytes per read, then fails with EIO after ``fail_at`` bytes."""

    def __init__(self, data: bytes, step: int, fail_at: int | None = None) -> None:
        self._data, self._step, self._fail_at, self._position = data, step, fail_at, 0
        self.largest_request = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.largest_request = max(self.largest_request, len(buffer))
        if self._fail_at is not None and self._position >= self._fail_at:
            raise OSError(5, "Input/output error")
        size = min(self._step, len(buffer), len(self._data) - self._position)
        buffer[:size] = self._data[self._position : self._position + size]
        self._position += size
        return size


def test_short_reads_from_a_pipe_like_stream_give_the_same_frames(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "x.pcap"), packets(5))
    file = (tmp_path / "x.pcap").read_bytes()
    stream = _Flaky(file, step=7)
    reader = PcapReader(stream, chunk_size=64)  # type: ignore[arg-type]
    assert list(reader) == read(file)[0]
    assert stream.largest_request <= 64


def test_a_read_error_ends_the_file_with_a_counted_reason(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "x.pcap"), packets(5))
    file = (tmp_path / "x.pcap").read_bytes()
    reader = PcapReader(_Flaky(file, step=10, fail_at=200), chunk_size=10)  # type: ignore[arg-type]
    frames = list(reader)
    assert 0 < len(frames) < 5
    assert reader.problems == {PROBLEM_READ_ERROR: 1}
    assert reader.error is not None and "Input/output error" in reader.error.detail


class _Generated(io.RawIOBase):
    """A pcap of ``count`` 1500-byte records, made while it is read, never whole in memory."""

    def __init__(self, count: int) -> None:
        self._pending = pcap_file([])
        self._left = count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending and self._left:
            self._left -= 1
            self._pending = pcap_file([b"\xab" * 1500])[24:]
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_memory_stays_flat_however_long_the_file() -> None:
    reader = PcapReader(_Generated(20_000))  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        frames = sum(1 for _ in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == 20_000  # 30 MB read
    assert peak < 1_000_000


def test_a_reader_reads_its_stream_once() -> None:
    reader = PcapReader(io.BytesIO(pcap_file([b"x"])))
    list(reader)
    with pytest.raises(RuntimeError):
        list(reader)


# --- never raises -----------------------------------------------------------


def valid_files() -> Iterator[bytes]:
    yield pcap_file([b"\x01" * 30, b"\x02" * 60])
    order = "<"
    file = section(order) + interface(order, SLL, 64, option(order, 9, b"\x09"))
    yield file + enhanced(order, 0, 7, b"\x03" * 40) + simple(order, b"\x04" * 10)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(1, 40))
def test_random_bytes_never_raise(data: bytes, chunk_size: int) -> None:
    _assert_never_raises(data, chunk_size)


@settings(max_examples=300)
@given(
    st.sampled_from(list(valid_files())),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
    st.integers(1, 40),
)
def test_damaged_capture_files_never_raise(
    file: bytes, flips: list[tuple[int, int]], cut: int, chunk_size: int
) -> None:
    damaged = bytearray(file)
    for position, value in flips:
        if position < len(damaged):
            damaged[position] = value
    _assert_never_raises(bytes(damaged[: len(file) - cut % (len(file) + 1)]), chunk_size)


@given(st.binary(max_size=200))
def test_random_bytes_behind_a_valid_header_never_raise(tail: bytes) -> None:
    _assert_never_raises(pcap_file([]) + tail, 16)
    _assert_never_raises(section(">") + interface(">", ETHERNET) + tail, 16)


def _assert_never_raises(data: bytes, chunk_size: int) -> None:
    reader = PcapReader(io.BytesIO(data), chunk_size=chunk_size, max_record=1 << 16)
    frames = list(reader)
    assert reader.frames == len(frames)
    assert set(reader.problems) <= PROBLEMS
    if reader.error is not None:
        assert reader.problems[reader.error.reason] == 1
