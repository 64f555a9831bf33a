"""What each node's capture lost, read from its CaptureStats. Pure.

An agent's stats carry running totals since its process began, tagged with
a random ``boot_id``. A node's loss is the sum, over its boots, of the drops
for the reasons that mean lost data (:data:`callmap.wire.LOSS_REASONS`) in the
latest totals of each boot. So a stats record that never arrived costs
nothing (the next one's totals include it), and an agent restart starts a new
boot instead of resetting the figure. Records from agents too old to send
totals add their interval's drops instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from callmap.wire import LOSS_REASONS, CaptureStats, StageStats

MAX_BOOTS = 16
"""Boots kept apart per node; older ones are folded into one settled sum."""


@dataclass(frozen=True, slots=True)
class NodeFigure:
    """One node's records lost for one reason, and when its stats last arrived."""

    cluster: str
    node: str
    reason: str
    records: int
    last_stats: float


@dataclass(slots=True)
class _Boot:
    seq: int
    ts: float
    lost: Counter[str]


@dataclass(slots=True)
class _Node:
    boots: dict[str, _Boot] = field(default_factory=dict)
    settled: Counter[str] = field(default_factory=Counter)
    last_stats: float = 0.0


def lost_in(stages: dict[str, StageStats]) -> Counter[str]:
    """The drops of ``stages`` that mean lost data, by reason."""
    lost: Counter[str] = Counter()
    for stage in stages.values():
        for reason, count in stage.dropped.items():
            if reason in LOSS_REASONS:
                lost[reason] += count
    return lost


class NodeLoss:
    """Every node's loss so far, from the CaptureStats it sent."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], _Node] = {}

    def add(self, stats: CaptureStats) -> None:
        node = self._nodes.setdefault((stats.cluster, stats.node), _Node())
        node.last_stats = max(node.last_stats, stats.ts)
        if not stats.boot_id:  # an agent without running totals
            node.settled.update(lost_in(stats.stages))
            return
        boot = node.boots.get(stats.boot_id)
        if boot is not None and boot.seq >= stats.seq:
            return  # a repeat, or older than what is known
        node.boots[stats.boot_id] = _Boot(stats.seq, stats.ts, lost_in(stats.totals))
        if len(node.boots) > MAX_BOOTS:
            oldest = min(node.boots, key=lambda boot_id: node.boots[boot_id].ts)
            node.settled.update(node.boots.pop(oldest).lost)

    def figures(self) -> Iterator[NodeFigure]:
        """Each node's loss by reason (every loss reason, zeros included)."""
        for (cluster, name), node in sorted(self._nodes.items()):
            lost = Counter(node.settled)
            for boot in node.boots.values():
                lost.update(boot.lost)
            for reason in LOSS_REASONS:
                yield NodeFigure(cluster, name, reason, lost[reason], node.last_stats)

    def __len__(self) -> int:
        return len(self._nodes)
