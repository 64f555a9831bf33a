"""What every pipeline stage saw, emitted and dropped, and why.

Stages bump plain integers on their hot path (no locks: each stage has one
writer); readers take snapshots. :meth:`Counters.interval` turns the change
since the previous call into the wire's ``StageStats``, and
:mod:`callmap.metrics` exposes the running totals to Prometheus at scrape time,
so nothing is counted twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from callmap.wire.records import StageStats


@dataclass(slots=True)
class StageCounters:
    """Running totals of one stage."""

    seen: int = 0
    emitted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def copy(self) -> StageCounters:
        return StageCounters(self.seen, self.emitted, Counter(self.dropped))


class Counters:
    """The counters of every stage of one process, by stage name."""

    def __init__(self) -> None:
        self._stages: dict[str, StageCounters] = {}
        self._last: dict[str, StageCounters] = {}
        self.events: Counter[str] = Counter()
        """Named outcomes that are neither a stage's input nor a drop (e.g. "late")."""

    def stage(self, name: str) -> StageCounters:
        """The counters of ``name``, created on first use."""
        counters = self._stages.get(name)
        if counters is None:
            counters = self._stages[name] = StageCounters()
        return counters

    def totals(self) -> dict[str, StageCounters]:
        """A consistent-enough copy of every stage's running totals."""
        return {name: counters.copy() for name, counters in list(self._stages.items())}

    def interval(self) -> dict[str, StageStats]:
        """What changed since the previous call, as wire records."""
        now = self.totals()
        result = {
            name: _stats(current, self._last.get(name, StageCounters()))
            for name, current in now.items()
        }
        self._last = now
        return result

    def running(self) -> dict[str, StageStats]:
        """Every stage's running totals, as wire records."""
        return {name: _stats(current, StageCounters()) for name, current in self.totals().items()}


def _stats(current: StageCounters, before: StageCounters) -> StageStats:
    """What changed from ``before`` to ``current``."""
    dropped = {
        reason: count - before.dropped.get(reason, 0)
        for reason, count in current.dropped.items()
        if count != before.dropped.get(reason, 0)
    }
    return StageStats(
        seen=current.seen - before.seen, emitted=current.emitted - before.emitted, dropped=dropped
    )
