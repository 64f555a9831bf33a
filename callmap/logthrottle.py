"""Saying in the log that something keeps happening, without a line each time.

Bad input, lost events and dropped records are counted one by one (the
counters and metrics have each); the log gets a line the first time, then at
most one an interval with how many came since the line before. Pure: the time
is the caller's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Due", "LogThrottle"]


class Due(NamedTuple):
    """A log line to write now: how many came since the last line, and how long ago
    that was (None for the first line)."""

    occurrences: int
    since: float | None


class LogThrottle:
    """Occurrences of one thing, counted; a line about them due the first time, then
    at most once every ``interval`` seconds, or at once when the clock stepped back."""

    __slots__ = ("_clock", "_count", "_logged_at", "interval")

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._logged_at: float | None = None
        self._count = 0
        """Occurrences since the last line."""

    def add(self, count: int = 1) -> Due | None:
        """Count ``count`` more; the line to write now, if one is due."""
        self._count += count
        now = self._clock()
        logged_at = self._logged_at
        if logged_at is not None and 0 <= now - logged_at < self.interval:
            return None
        due = Due(self._count, None if logged_at is None else now - logged_at)
        self._logged_at, self._count = now, 0
        return due
