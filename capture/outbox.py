"""A bounded queue of encoded messages waiting for Kafka.

Capture must never stall because Kafka does: messages wait here while the
broker is away, and when the queue would grow past its byte budget the
*oldest* messages are dropped (fresh data is worth more than stale data) and
counted by the records they carried. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka message to send, and how many wire records it carries."""

    topic: str
    key: bytes | None
    value: bytes
    records: int

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0)


class Outbox:
    """FIFO of messages under a byte budget; overflow drops the oldest."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._queue: deque[Outgoing] = deque()
        self._bytes = 0
        self.dropped_messages = 0
        self.dropped_records = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, message: Outgoing) -> int:
        """Queue ``message``; return how many records were dropped to make room."""
        self._queue.append(message)
        self._bytes += message.size
        dropped = 0
        while self._bytes > self.max_bytes and self._queue:
            old = self._queue.popleft()
            self._bytes -= old.size
            dropped += old.records
            self.dropped_messages += 1
        self.dropped_records += dropped
        return dropped

    def peek(self) -> Outgoing | None:
        return self._queue[0] if self._queue else None

    def done(self, message: Outgoing) -> None:
        """Forget ``message`` after it was sent (if overflow has not dropped it already)."""
        if self._queue and self._queue[0] is message:
            self._queue.popleft()
            self._bytes -= message.size
