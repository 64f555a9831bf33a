"""The outbox keeps messages in order under a byte budget and an age bound, dropping
the oldest waiting, never those being sent."""

from __future__ import annotations

from callmap.wire import DROP_OVERFLOW as OVERFLOW
from callmap.wire import DROP_TOO_OLD as TOO_OLD
from capture.outbox import Outbox, Outgoing


def message(n: int, size: int = 100, records: int = 10, at: float = 0.0) -> Outgoing:
    return Outgoing("callmap.dns.v1", b"node", bytes([n % 256]) * size, records, at)


def test_messages_leave_in_the_order_they_came() -> None:
    outbox = Outbox(max_bytes=10_000)
    first, second = message(1), message(2)
    outbox.put(first)
    outbox.put(second)
    assert outbox.take() is first
    assert outbox.take() is second
    assert outbox.take() is None  # both handed out
    outbox.done(first)
    assert len(outbox) == 1


def test_overflow_drops_the_oldest_and_counts_their_records() -> None:
    outbox = Outbox(max_bytes=3 * 104)
    for n in range(3):
        assert outbox.put(message(n)) == 0
    assert outbox.put(message(3, records=7)) == 10
    assert outbox.dropped_records == {OVERFLOW: 10} and outbox.dropped_messages == 1
    assert outbox.bytes <= outbox.max_bytes
    assert outbox.take() == message(1)


def test_messages_being_sent_are_never_dropped_the_oldest_waiting_goes() -> None:
    outbox = Outbox(max_bytes=3 * 104)
    outbox.put(message(1))
    outbox.put(message(2))
    first, second = outbox.take(), outbox.take()
    outbox.put(message(3))
    outbox.put(message(4))  # over budget while messages 1 and 2 are being sent
    assert outbox.dropped_records == {OVERFLOW: 10}
    outbox.done(first)  # type: ignore[arg-type]
    outbox.done(second)  # type: ignore[arg-type]
    assert len(outbox) == 1 and outbox.take() == message(4)


def test_messages_whose_sending_failed_go_again_oldest_first() -> None:
    outbox = Outbox(max_bytes=10_000)
    for n in range(3):
        outbox.put(message(n))
    assert [outbox.take(), outbox.take()] == [message(0), message(1)]
    outbox.release()
    assert [outbox.take(), outbox.take(), outbox.take()] == [message(n) for n in range(3)]


def test_each_record_is_counted_once_as_sent_or_dropped() -> None:
    outbox, sent = Outbox(max_bytes=3 * 104), 0
    for n in range(50):
        outbox.put(message(n, records=n + 1))
        if n % 4 == 0 and (head := outbox.take()) is not None:
            outbox.done(head)
            sent += head.records
    queued = 0
    while (head := outbox.take()) is not None:
        outbox.done(head)
        queued += head.records
    assert sent + queued + outbox.dropped_records.total() == sum(range(1, 51))


def test_messages_past_the_age_bound_are_dropped_and_counted_apart() -> None:
    outbox = Outbox(max_bytes=10_000, max_age=60.0)
    outbox.put(message(1, at=100.0))
    outbox.put(message(2, at=130.0, records=3))
    assert outbox.expire(now=150.0) == 0
    assert outbox.expire(now=161.0) == 10
    assert outbox.dropped_records == {TOO_OLD: 10} and outbox.take() == message(2, 100, 3, 130.0)
    assert outbox.expire(now=1000.0) == 0  # the one being sent stays
    assert Outbox(max_age=0).expire(now=1e9) == 0


def test_bytes_follow_what_is_queued() -> None:
    outbox = Outbox()
    outbox.put(message(1, size=50))
    assert outbox.bytes == 54
    outbox.done(outbox.take())  # type: ignore[arg-type]
    assert outbox.bytes == 0 and outbox.take() is None
