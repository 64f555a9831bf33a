"""The outbox keeps messages in order under a byte budget, dropping the oldest."""

from __future__ import annotations

from capture.outbox import Outbox, Outgoing


def message(n: int, size: int = 100, records: int = 10) -> Outgoing:
    return Outgoing("callmap.dns.v1", b"node", bytes([n % 256]) * size, records)


def test_messages_leave_in_the_order_they_came() -> None:
    outbox = Outbox(max_bytes=10_000)
    first, second = message(1), message(2)
    outbox.put(first)
    outbox.put(second)
    assert outbox.peek() is first
    outbox.done(first)
    assert outbox.peek() is second and len(outbox) == 1


def test_overflow_drops_the_oldest_and_counts_their_records() -> None:
    outbox = Outbox(max_bytes=3 * 104)
    for n in range(3):
        assert outbox.put(message(n)) == 0
    assert outbox.put(message(3, records=7)) == 10
    assert outbox.dropped_records == 10 and outbox.dropped_messages == 1
    assert outbox.bytes <= outbox.max_bytes
    assert outbox.peek() == message(1)


def test_a_message_dropped_while_in_flight_is_not_removed_twice() -> None:
    outbox = Outbox(max_bytes=2 * 104)
    in_flight = message(1)
    outbox.put(in_flight)
    outbox.put(message(2))
    outbox.put(message(3))  # drops in_flight while the publisher is sending it
    outbox.done(in_flight)
    assert len(outbox) == 2 and outbox.peek() == message(2)


def test_bytes_follow_what_is_queued() -> None:
    outbox = Outbox()
    outbox.put(message(1, size=50))
    assert outbox.bytes == 54
    outbox.done(outbox.peek())  # type: ignore[arg-type]
    assert outbox.bytes == 0 and outbox.peek() is None
