"""Capture files in, ``(timestamp, linktype, frame)`` out: a pure pcap and pcapng reader.

``callmap capture dns --pcap FILE`` replays a capture through the same DNS
path as live capture; this module turns the file into frames. It needs no
libpcap and no scapy, and it promises:

* Formats: pcap in both byte orders, with microsecond (0xa1b2c3d4) or
  nanosecond (0xa1b23c4d) timestamps; pcapng with any number of sections,
  each in its own byte order. From pcapng it reads Interface Description
  Blocks (link type, ``if_tsresol``, ``if_tsoffset``, snap length), Enhanced
  and Simple Packet Blocks and the obsolete Packet Block; other blocks (name
  resolution, statistics, custom, ...) are skipped.
* Streaming: the file object is read in chunks of ``chunk_size`` bytes and
  only the current record is held, so memory is bounded by the chunk size
  plus ``max_record`` (the largest record or block accepted), whatever the
  size of the file. Pipes and short reads are fine.
* Never raises on bad bytes, nor on a read error of the file object. Bytes
  the reader cannot frame any more (unknown magic, a record running past the
  end, a block length that contradicts its trailer, ...) end the iteration:
  the reason is counted in ``problems`` and described by ``error``, a
  :class:`CaptureFileError` naming the byte offset. A well-framed block that
  is unusable (a packet of an undeclared interface, a length past its block)
  is skipped, counted in ``problems``, and reading goes on.
* Simple Packet Blocks carry no timestamp: their frames have ``nan``, and
  the caller decides what time they happened at.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO, Final, NamedTuple

from callmap.errors import CallmapError

# Reasons, as counted in PcapReader.problems. The first group ends the iteration.
PROBLEM_NOT_A_CAPTURE: Final = "not_a_capture_file"
PROBLEM_TRUNCATED: Final = "truncated"
PROBLEM_BAD_BLOCK_LENGTH: Final = "bad_block_length"
PROBLEM_BAD_BYTE_ORDER: Final = "bad_byte_order_magic"
PROBLEM_UNSUPPORTED_VERSION: Final = "unsupported_version"
PROBLEM_OVERSIZED: Final = "oversized_record"
PROBLEM_READ_ERROR: Final = "read_error"
# These skip one block and reading goes on.
PROBLEM_BAD_INTERFACE: Final = "bad_interface_block"
PROBLEM_UNKNOWN_INTERFACE: Final = "unknown_interface"
PROBLEM_BAD_PACKET: Final = "bad_packet_block"
PROBLEM_BAD_OPTIONS: Final = "bad_options"
PROBLEMS: Final = frozenset(
    {
        PROBLEM_NOT_A_CAPTURE,
        PROBLEM_TRUNCATED,
        PROBLEM_BAD_BLOCK_LENGTH,
        PROBLEM_BAD_BYTE_ORDER,
        PROBLEM_UNSUPPORTED_VERSION,
        PROBLEM_OVERSIZED,
        PROBLEM_READ_ERROR,
        PROBLEM_BAD_INTERFACE,
        PROBLEM_UNKNOWN_INTERFACE,
        PROBLEM_BAD_PACKET,
        PROBLEM_BAD_OPTIONS,
    }
)

DEFAULT_CHUNK_SIZE: Final = 1 << 16
DEFAULT_MAX_RECORD: Final = 1 << 24  # far above any snap length; bounds memory on garbage

_PCAP_MAGICS: Final = {  # first four bytes -> (byte order, ticks per second)
    b"\xd4\xc3\xb2\xa1": ("<", 10**6),
    b"\xa1\xb2\xc3\xd4": (">", 10**6),
    b"\x4d\x3c\xb2\xa1": ("<", 10**9),
    b"\xa1\xb2\x3c\x4d": (">", 10**9),
}
_SHB: Final = b"\x0a\x0d\x0d\x0a"  # a palindrome: the same in both byte orders
_BYTE_ORDERS: Final = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_OPT_END, _IF_TSRESOL, _IF_TSOFFSET = 0, 9, 14


class CapturedFrame(NamedTuple):
    """One frame of a capture file; unpacks as ``timestamp, linktype, data``."""

    timestamp: float  # seconds since the epoch; nan for Simple Packet Blocks
    linktype: int  # LINKTYPE_* of the interface the frame was captured on
    data: bytes  # the captured bytes (may be cut at the snap length)


class CaptureFileError(CallmapError):
    """Why a capture file could not be read to its end."""

    def __init__(self, reason: str, offset: int, detail: str) -> None:
        self.reason = reason  # one of PROBLEMS
        self.offset = offset  # byte offset in the file where the problem starts
        self.detail = detail
        super().__init__(f"{reason} at byte {offset}: {detail}")


class _Interface(NamedTuple):
    linktype: int
    ticks_per_second: int
    offset: int  # if_tsoffset, seconds added to every timestamp
    snaplen: int


class _Fatal(Exception):
    def __init__(self, reason: str, detail: str, offset: int) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.offset = reason, detail, offset


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Input:
    """Exact-length reads over a binary stream, in chunks, tracking the offset."""

    def __init__(self, stream: BinaryIO, chunk_size: int) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._start = 0  # bytes of _buffer already consumed
        self.offset = 0  # of the next unread byte in the file

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer when the file ends first."""
        while len(self._buffer) - self._start < size:
            chunk = self._stream.read(self._chunk_size)
            if not chunk:
                break
            del self._buffer[: self._start]  # keep only the unread tail
            self._start = 0
            self._buffer += chunk
        end = min(self._start + size, len(self._buffer))
        with memoryview(self._buffer) as view:
            data = bytes(view[self._start : end])
        self._start = end
        self.offset += len(data)
        return data

    def skip(self, size: int) -> int:
        """Discard up to ``size`` bytes without buffering them; return how many."""
        skipped = min(size, len(self._buffer) - self._start)
        self._start += skipped
        while skipped < size:
            chunk = self._stream.read(min(self._chunk_size, size - skipped))
            if not chunk:
                break
            skipped += len(chunk)
        self.offset += skipped
        return skipped


class PcapReader:
    """Iterate the frames of one pcap or pcapng stream, once.

    After the iteration, ``problems`` counts what went wrong by reason (empty
    for a sound file), ``error`` says why the iteration stopped early (None if
    the file was read to its end), ``frames`` counts the frames yielded and
    ``format`` is ``"pcap"`` or ``"pcapng"`` once the magic was recognised.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_record: int = DEFAULT_MAX_RECORD,
    ) -> None:
        self._input = _Input(stream, chunk_size)
        self._max_record = max_record
        self._started = False
        self.format: str | None = None
        self.frames = 0
        self.problems: Counter[str] = Counter()
        self.error: CaptureFileError | None = None

    def __iter__(self) -> Iterator[CapturedFrame]:
        if self._started:
            raise RuntimeError("a PcapReader reads its stream once")
        self._started = True
        try:
            magic = self._input.read(4)
            if magic in _PCAP_MAGICS:
                self.format = "pcap"
                frames = self._pcap(magic)
            elif magic == _SHB:
                self.format = "pcapng"
                frames = self._pcapng()
            elif len(magic) < 4:
                raise _Fatal(PROBLEM_TRUNCATED, "the file ends before its magic number", 0)
            else:
                raise _Fatal(PROBLEM_NOT_A_CAPTURE, f"unknown magic number {magic.hex()}", 0)
            for frame in frames:
                self.frames += 1
                yield frame
        except _Fatal as stop:
            self.problems[stop.reason] += 1
            self.error = CaptureFileError(stop.reason, stop.offset, stop.detail)
        except OSError as error:
            self.problems[PROBLEM_READ_ERROR] += 1
            self.error = CaptureFileError(PROBLEM_READ_ERROR, self._input.offset, str(error))

    def _exactly(self, size: int, what: str, start: int) -> bytes:
        """``size`` bytes of the record or block that starts at ``start``."""
        data = self._input.read(size)
        if len(data) < size:
            raise _Fatal(PROBLEM_TRUNCATED, f"{what} is cut short", start)
        return data

    def _check_size(self, size: int, what: str, start: int) -> None:
        if size > self._max_record:
            detail = f"{what} of {size} bytes, more than {self._max_record}"
            raise _Fatal(PROBLEM_OVERSIZED, detail, start)

    def _pcap(self, magic: bytes) -> Iterator[CapturedFrame]:
        order, ticks = _PCAP_MAGICS[magic]
        header = self._exactly(20, "the file header", 0)
        major, minor, _zone, _sigfigs, _snaplen, network = struct.unpack(order + "HHiIII", header)
        if major != 2:
            raise _Fatal(PROBLEM_UNSUPPORTED_VERSION, f"pcap version {major}.{minor}", 4)
        linktype = network & 0xFFFF  # the upper bits describe the FCS, not the link
        record = struct.Struct(order + "IIII")
        while True:
            start = self._input.offset
            head = self._input.read(record.size)
            if not head:
                return
            if len(head) < record.size:
                raise _Fatal(PROBLEM_TRUNCATED, "a record header is cut short", start)
            seconds, fraction, caplen, _wirelen = record.unpack(head)
            self._check_size(caplen, "a record", start)
            data = self._exactly(caplen, "a record", start)
            yield CapturedFrame(seconds + fraction / ticks, linktype, data)

    def _pcapng(self) -> Iterator[CapturedFrame]:
        interfaces: list[_Interface | None] = []
        order = self._section_header(0)
        while True:
            start = self._input.offset
            raw_type = self._input.read(4)
            if not raw_type:
                return
            if len(raw_type) < 4:
                raise _Fatal(PROBLEM_TRUNCATED, "a block type is cut short", start)
            if raw_type == _SHB:
                order = self._section_header(start)
                interfaces = []  # interface numbers restart in every section
                continue
            (block_type,) = struct.unpack(order + "I", raw_type)
            (length,) = struct.unpack(order + "I", self._exactly(4, "a block length", start))
            if length < 12 or length % 4:
                raise _Fatal(PROBLEM_BAD_BLOCK_LENGTH, f"block length {length}", start)
            if block_type not in (_IDB, _PB, _SPB, _EPB):
                if self._input.skip(length - 12) < length - 12:
                    detail = f"a block of type {block_type:#x} is cut short"
                    raise _Fatal(PROBLEM_TRUNCATED, detail, start)
                self._trailer(order, length, start)
                continue
            self._check_size(length, "a block", start)
            body = self._exactly(length - 12, "a block", start)
            self._trailer(order, length, start)
            try:
                if block_type == _IDB:
                    interfaces.append(None)  # keeps the numbering if the block is bad
                    interfaces[-1] = self._interface(order, body)
                else:
                    yield self._packet(order, block_type, body, interfaces)
            except _Skip as skip:
                self.problems[skip.reason] += 1

    def _section_header(self, start: int) -> str:
        head = self._exactly(8, "a section header", start)
        order = _BYTE_ORDERS.get(head[4:])
        if order is None:
            raise _Fatal(PROBLEM_BAD_BYTE_ORDER, f"byte-order magic {head[4:].hex()}", start + 8)
        (length,) = struct.unpack(order + "I", head[:4])
        if length < 28 or length % 4:
            raise _Fatal(PROBLEM_BAD_BLOCK_LENGTH, f"section header length {length}", start)
        self._check_size(length, "a section header", start)
        body = self._exactly(length - 16, "a section header", start)
        major, minor = struct.unpack_from(order + "HH", body)
        if major != 1:
            raise _Fatal(PROBLEM_UNSUPPORTED_VERSION, f"pcapng version {major}.{minor}", start)
        self._trailer(order, length, start)
        return order

    def _trailer(self, order: str, length: int, start: int) -> None:
        (trailer,) = struct.unpack(order + "I", self._exactly(4, "a block trailer", start))
        if trailer != length:
            detail = f"block length {length} but trailer {trailer}"
            raise _Fatal(PROBLEM_BAD_BLOCK_LENGTH, detail, start)

    def _interface(self, order: str, body: bytes) -> _Interface:
        if len(body) < 8:
            raise _Skip(PROBLEM_BAD_INTERFACE)
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
        ticks, offset = 10**6, 0
        try:
            for code, value in _options(order, body, 8):
                if code == _IF_TSRESOL and value:
                    exponent = value[0] & 0x7F
                    ticks = 2**exponent if value[0] & 0x80 else 10**exponent
                elif code == _IF_TSOFFSET and len(value) == 8:
                    (offset,) = struct.unpack(order + "q", value)
        except _Skip as skip:  # keep what the options said before they broke
            self.problems[skip.reason] += 1
        return _Interface(linktype, ticks, offset, snaplen)

    def _packet(
        self, order: str, block_type: int, body: bytes, interfaces: list[_Interface | None]
    ) -> CapturedFrame:
        if block_type == _SPB:
            if len(body) < 4:
                raise _Skip(PROBLEM_BAD_PACKET)
            interface = _lookup(interfaces, 0)
            (wirelen,) = struct.unpack_from(order + "I", body)
            caplen = min(wirelen, len(body) - 4)
            if interface.snaplen:
                caplen = min(caplen, interface.snaplen)
            return CapturedFrame(math.nan, interface.linktype, body[4 : 4 + caplen])
        # The obsolete Packet Block has a 16-bit interface id and a drop counter instead.
        header = order + ("IIIII" if block_type == _EPB else "HxxIIII")
        if len(body) < 20:
            raise _Skip(PROBLEM_BAD_PACKET)
        interface_id, high, low, caplen, _wirelen = struct.unpack_from(header, body)
        if caplen > len(body) - 20:
            raise _Skip(PROBLEM_BAD_PACKET)
        interface = _lookup(interfaces, interface_id)
        timestamp = ((high << 32) | low) / interface.ticks_per_second + interface.offset
        return CapturedFrame(timestamp, interface.linktype, body[20 : 20 + caplen])


def _lookup(interfaces: list[_Interface | None], interface_id: int) -> _Interface:
    interface = interfaces[interface_id] if interface_id < len(interfaces) else None
    if interface is None:
        raise _Skip(PROBLEM_UNKNOWN_INTERFACE)
    return interface


def _options(order: str, body: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """The (code, value) options from ``start`` to opt_endofopt or the end of the body."""
    position = start
    while position + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, position)
        position += 4
        if code == _OPT_END:
            return
        if position + length > len(body):
            raise _Skip(PROBLEM_BAD_OPTIONS)
        yield code, body[position : position + length]
        position += length + (-length % 4)
