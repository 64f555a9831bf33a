"""What the publisher says about records it drops: every one counted, the lines
at most one an interval, each with how many were dropped since the last."""

from __future__ import annotations

import logging

import pytest

from callmap.config import load_settings
from callmap.counters import Counters
from callmap.wire import DROP_OVERFLOW, DROP_TOO_OLD
from capture.outbox import Outbox, Outgoing
from capture.publisher import DROP_LOG_INTERVAL, Publisher


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(records: int = 10) -> Outgoing:
    return Outgoing("callmap.dns.v1", b"node", b"x" * 100, records)


def publisher(clock: Clock, max_age: float = 0.0) -> tuple[Publisher, Counters]:
    counters = Counters()
    outbox = Outbox(max_bytes=250, max_age=max_age)  # room for two messages
    kafka = load_settings({"CALLMAP_KAFKA_BOOTSTRAP": "127.0.0.1:1"}).kafka
    return Publisher(kafka, outbox, counters.stage("publish"), clock=clock), counters


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_overflowing_outbox_logs_its_first_drop_then_a_sum_an_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sender, counters = publisher(clock)
    with caplog.at_level(logging.WARNING, logger="capture.publisher"):
        for _ in range(3):
            sender.submit(message())  # the third drops the first: 10 records
        for _ in range(50):  # a sustained overload: 50 more drops within the interval
            clock.now += DROP_LOG_INTERVAL / 100
            sender.submit(message())
        clock.now += DROP_LOG_INTERVAL / 2
        sender.submit(message())  # the interval has passed: one line for all of them

    assert warnings(caplog) == [
        "outbox full: dropped the oldest 10 records (further drops logged at most every 10 s)",
        "outbox full: dropped the oldest 510 records in the last 10 s",
    ]
    assert counters.totals()["publish"].dropped[DROP_OVERFLOW] == 520


def test_a_clock_stepped_back_does_not_silence_the_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sender, _ = publisher(clock)
    with caplog.at_level(logging.WARNING, logger="capture.publisher"):
        for _ in range(3):
            sender.submit(message())
        clock.now -= 3600
        sender.submit(message())

    assert len(warnings(caplog)) == 2


def test_records_past_the_age_bound_are_logged_the_same_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sender, counters = publisher(clock, max_age=5.0)
    with caplog.at_level(logging.WARNING, logger="capture.publisher"):
        for _ in range(4):
            sender.submit(message())
            clock.now += 6.0  # each message is past the bound at the next take
            sender._take()

    assert warnings(caplog)[0] == (
        "past the outbox's 5 s: dropped 10 records (further drops logged at most every 10 s)"
    )
    assert len(warnings(caplog)) == 2  # the first, then one after 12 s
    assert counters.totals()["publish"].dropped[DROP_TOO_OLD] == 40
