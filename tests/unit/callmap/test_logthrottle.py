"""A log line about something that keeps happening: the first time, then one an
interval with how many came since."""

from __future__ import annotations

from callmap.logthrottle import Due, LogThrottle


def test_the_first_occurrence_is_due_then_one_line_an_interval_with_the_sum() -> None:
    now = [100.0]
    throttle = LogThrottle(10.0, lambda: now[0])

    assert throttle.add(3) == Due(3, None)
    now[0] = 105.0
    assert throttle.add() is None
    assert throttle.add(2) is None
    now[0] = 110.0
    assert throttle.add() == Due(4, 10.0)


def test_a_clock_stepped_back_makes_a_line_due() -> None:
    now = [100.0]
    throttle = LogThrottle(10.0, lambda: now[0])
    throttle.add()
    now[0] = 50.0

    assert throttle.add() == Due(1, -50.0)
