"""Edges over their life in a lab run: expired once their calls stop, and only then. Pure.

The callers' logs (:mod:`lab.calltruth`) say when each pair of workloads was
last called. With the run's stream app on a short TTL (:data:`LAB_TTL`):

- a pair whose calls stopped must be announced ``expired`` by its last call
  plus the TTL, give or take the log's thinning (:data:`LOG_GAP`: a caller
  logs a repeated outcome at most that often) and :data:`SLACK` (socket scans,
  ticks, the combiner);
- no pair may be announced ``expired`` earlier than its last call plus the TTL
  less :data:`SLACK`: it was still being called;
- a pair announced ``new`` again without being ``expired`` in between is
  counted by the edge reader (``new_again``).

A pair is *stopped* when its last logged call is :data:`STOPPED_AFTER` seconds
old; calls that go on are logged every :data:`LOG_GAP` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.truth import ExpectedEdge

LAB_TTL = 30.0
"""The stream app's ``--ttl`` in lab runs: short, so that a run sees edges expire."""
LAB_REFRESH = 10.0
"""Capture's ``--refresh-interval`` in lab runs: a live connection reported well within the TTL."""
EDGE_REFRESH = 5.0
"""The stream app's ``--refresh-interval`` in single-cluster lab runs: a port or source a
sighting adds after an edge's first announcement (a UDP port after the DNS answer that
made the edge) reaches the topic within the run, as in the cluster lab's runs."""
LOG_GAP = 5.0
"""How often a caller logs a call whose outcome repeats (``lab.caller.LOG_INTERVAL``)."""
STOPPED_AFTER = 3 * LOG_GAP
SLACK = 10.0


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Where the edges' lives disagree with the callers' logs."""

    early: tuple[ExpectedEdge, ...] = ()
    """Expired while the callers still called them."""
    late: tuple[ExpectedEdge, ...] = ()
    """Not expired though their calls stopped more than a TTL ago."""
    expired: tuple[ExpectedEdge, ...] = ()
    """Expired as they should be (for the report)."""

    @property
    def right(self) -> bool:
        return not self.early and not self.late

    def as_json(self) -> dict[str, Any]:
        return {
            "expired_early": [e.as_json() for e in self.early],
            "not_expired": [e.as_json() for e in self.late],
            "expired": [e.as_json() for e in self.expired],
        }


def stopped(last_calls: Mapping[ExpectedEdge, float], now: float) -> dict[ExpectedEdge, float]:
    """The pairs whose calls stopped, with their last call."""
    return {pair: t for pair, t in last_calls.items() if t <= now - STOPPED_AFTER}


def expiry_due(last_calls: Mapping[ExpectedEdge, float], now: float, ttl: float) -> float:
    """When every stopped pair must have expired (``now`` if none has stopped)."""
    ends = [t + LOG_GAP + ttl + SLACK for t in stopped(last_calls, now).values()]
    return max([now, *ends])


def check_lifecycle(
    last_calls: Mapping[ExpectedEdge, float],
    expired_at: Mapping[ExpectedEdge, float],
    now: float,
    ttl: float,
) -> Lifecycle:
    """The pairs the callers called, against when their edges expired (if they did)."""
    early, late, right = [], [], []
    for pair, last in sorted(last_calls.items()):
        when = expired_at.get(pair)
        if when is not None and when < last + ttl - SLACK:
            early.append(pair)
        elif when is None and now > last + LOG_GAP + ttl + SLACK:
            late.append(pair)
        elif when is not None:
            right.append(pair)
    return Lifecycle(tuple(early), tuple(late), tuple(right))
