"""A bounded queue of encoded messages waiting for Kafka.

Capture must never stall because Kafka does: messages wait here while the
broker is away, within two bounds the user sets. When the queue would grow
past its byte budget, the *oldest* messages are dropped (fresh data is worth
more than stale data); a message older than the age bound is dropped too.
Dropped records are counted by reason. The messages being sent (handed out
by :meth:`Outbox.take`, the oldest ones, until :meth:`Outbox.done` or
:meth:`Outbox.release`) are never dropped: their records either reach Kafka
or stay queued, so each record is counted once, as sent or as dropped. Pure:
no I/O; time comes in as arguments.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from callmap.wire import DROP_OVERFLOW, DROP_TOO_OLD

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka message to send, and how many wire records it carries."""

    topic: str
    key: bytes | None
    value: bytes
    records: int
    queued_at: float = 0.0
    """When it was queued (seconds, the agent's clock): the age bound reads it."""

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0)


class Outbox:
    """FIFO of messages under a byte budget and an age bound."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_age: float = DEFAULT_MAX_AGE):
        """``max_age`` 0: no age bound."""
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._queue: deque[Outgoing] = deque()
        self._bytes = 0
        self._out = 0
        """How many of the oldest messages are handed out: being sent."""
        self.dropped_messages = 0
        self.dropped_records: Counter[str] = Counter()
        """Records dropped so far, by reason (``DROP_OVERFLOW``, ``DROP_TOO_OLD``)."""

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
        while self._bytes > self.max_bytes and (old := self._oldest_waiting()) is not None:
            dropped += self._drop(old, DROP_OVERFLOW)
        return dropped

    def expire(self, now: float) -> int:
        """Drop the messages older than the age bound; return how many records went."""
        if not self.max_age:
            return 0
        dropped, limit = 0, now - self.max_age
        while (old := self._oldest_waiting()) is not None and old.queued_at < limit:
            dropped += self._drop(old, DROP_TOO_OLD)
        return dropped

    def take(self) -> Outgoing | None:
        """The oldest message not handed out yet, to send now (None: there is none). It
        is not dropped until :meth:`done` or :meth:`release`."""
        message = self._oldest_waiting()
        if message is not None:
            self._out += 1
        return message

    def done(self, message: Outgoing) -> None:
        """Forget ``message``, the oldest handed out, after it was sent."""
        if self._out and self._queue[0] is message:
            self._queue.popleft()
            self._bytes -= message.size
            self._out -= 1

    def release(self) -> None:
        """Every message handed out waits again (their sending failed), oldest first."""
        self._out = 0

    def _oldest_waiting(self) -> Outgoing | None:
        return self._queue[self._out] if len(self._queue) > self._out else None

    def _drop(self, message: Outgoing, reason: str) -> int:
        del self._queue[self._out]  # the oldest waiting: those before it are being sent
        self._bytes -= message.size
        self.dropped_messages += 1
        self.dropped_records[reason] += message.records
        return message.records
