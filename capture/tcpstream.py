"""DNS over TCP, reassembled: length-prefixed messages out of a server's segments. Pure.

A DNS server answers over TCP with a two-byte length before every message
(RFC 1035 4.2.2). A message may span several segments (a long answer, a small
MSS) and a segment may hold several messages. :class:`TcpStreams` follows each
flow from a server (server address and port, client address and port) by TCP
sequence number and promises:

- a segment that continues its flow (its sequence number is the next byte
  expected) is appended, and every complete message is returned, in order;
- a segment already taken (the same segment seen on a second interface of the
  node, or a retransmission) adds nothing: ``duplicate``; one that overlaps
  the end of what was taken adds its new tail;
- a segment after a gap (a segment lost, or not yet arrived) drops what was
  buffered of the unfinished message (counted as one ``tcp_partial``
  message) and starts afresh with the new segment, as does the first segment
  seen of a flow: both are read as starting with a length prefix, so a
  segment that does not is read as a malformed message by the parser, never
  as an answer that nobody sent;
- memory is bounded: a flow holds at most one unfinished message (a length
  prefix says at most 65,535 bytes, so a message always completes by then)
  and the rest of the segment that brought it; at most ``max_flows`` flows
  are followed (the least recently used is forgotten), and a flow idle for
  ``idle_seconds`` is forgotten at :meth:`expire`; each unfinished message
  forgotten is one ``tcp_partial``.

No clock and no I/O: the caller passes capture times.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from capture.frames import Segment

DUPLICATE = "duplicate"
"""A segment whose bytes were all taken already."""
DEFAULT_MAX_FLOWS = 4096
DEFAULT_IDLE_SECONDS = 10.0
_SEQ = 1 << 32

_length_prefix = struct.Struct("!H").unpack_from

FlowKey = tuple[str, int, str, int]


@dataclass(slots=True)
class _Flow:
    next_seq: int
    last: float
    buffer: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class Taken:
    """What one segment gave: complete messages, and how many unfinished were lost."""

    messages: list[bytes]
    lost: int = 0
    """Unfinished messages dropped (after a gap, or to make room): each a ``tcp_partial``."""
    duplicate: bool = False


class TcpStreams:
    """The unfinished DNS messages of every followed TCP flow; see the module docstring."""

    def __init__(
        self, max_flows: int = DEFAULT_MAX_FLOWS, idle_seconds: float = DEFAULT_IDLE_SECONDS
    ) -> None:
        self.max_flows = max_flows
        self.idle_seconds = idle_seconds
        self._flows: OrderedDict[FlowKey, _Flow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flows)

    def take(self, segment: Segment, ts: float) -> Taken:
        """One TCP segment from a server; the messages it completes."""
        key = (segment.src_ip, segment.src_port, segment.dst_ip, segment.dst_port)
        payload, seq = segment.payload, segment.seq
        flow = self._flows.get(key)
        lost = 0
        if flow is None:
            flow, lost = self._start(key, seq, ts)
        else:
            self._flows.move_to_end(key)
            flow.last = ts
            behind = (flow.next_seq - seq) % _SEQ  # bytes of this segment already taken
            if behind and behind < _SEQ // 2:  # it starts before the next byte expected
                if behind >= len(payload):
                    return Taken([], duplicate=True)
                payload = payload[behind:]
                seq = flow.next_seq
            elif seq != flow.next_seq:  # a gap: what was buffered cannot be finished
                lost += 1 if flow.buffer else 0
                flow.buffer.clear()
        flow.buffer += payload
        flow.next_seq = (seq + len(payload)) % _SEQ
        return Taken(_complete(flow.buffer), lost)

    def expire(self, now: float) -> int:
        """Forget flows idle for ``idle_seconds``; how many unfinished messages that lost."""
        horizon = now - self.idle_seconds
        lost = 0
        for key in [k for k, flow in self._flows.items() if flow.last < horizon]:
            lost += 1 if self._flows.pop(key).buffer else 0
        return lost

    def _start(self, key: FlowKey, seq: int, ts: float) -> tuple[_Flow, int]:
        """A new flow, and how many unfinished messages making room for it lost."""
        lost = 0
        while len(self._flows) >= self.max_flows:
            _, oldest = self._flows.popitem(last=False)
            lost += 1 if oldest.buffer else 0
        flow = self._flows[key] = _Flow(next_seq=seq, last=ts)
        return flow, lost


def _complete(buffer: bytearray) -> list[bytes]:
    """Take every complete length-prefixed message off the front of ``buffer``."""
    messages: list[bytes] = []
    pos, end = 0, len(buffer)
    while end - pos >= 2:
        (size,) = _length_prefix(buffer, pos)
        if end - pos - 2 < size:
            break
        messages.append(bytes(buffer[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    if pos:
        del buffer[:pos]
    return messages
