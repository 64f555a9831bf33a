"""The words and the rule every output uses for an edge's health."""

from __future__ import annotations

from callmap.wire import FlowHealth
from sinks.health import describe, failing, size


def test_a_call_is_failing_when_connects_failed_or_connections_were_reset() -> None:
    assert failing(FlowHealth(opened=9, failed=1))
    assert failing(FlowHealth(opened=9, closed=9, resets=1))
    assert not failing(FlowHealth(opened=9, closed=9, bytes_sent=10))
    assert not failing(None)  # nothing reported is not failing


def test_failures_come_first_and_nothing_zero_or_unknown_is_said() -> None:
    health = FlowHealth(opened=12, closed=11, failed=3, resets=1, bytes_sent=48210)
    assert describe(health) == "3 failed, 1 reset, 12 opened, 11 closed, 48.2 kB sent"
    assert describe(FlowHealth(resets=2)) == "2 resets"
    assert describe(FlowHealth(bytes_sent=0, bytes_received=0)) == "0 B sent, 0 B received"
    assert describe(FlowHealth()) == "no connections ended or opened"
    assert describe(None) == "no health reported"


def test_sizes_are_si_with_three_significant_digits() -> None:
    assert [size(n) for n in (0, 999, 1000, 48210, 1_520_000, 17_800_000_000)] == [
        "0 B",
        "999 B",
        "1 kB",
        "48.2 kB",
        "1.52 MB",
        "17.8 GB",
    ]
