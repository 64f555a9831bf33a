"""Lifecycle merge: the current state of every edge from a stream of changes.

Used wherever edges are read back (the topic, JSON Lines files) and to reduce a
sink's batch to one write per edge. Replays and duplicates change nothing: a
change that does not supersede the state already held is ignored. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callmap.wire import Edge
from sinks.changes import Change, supersedes


class EdgeBook:
    """The latest state of every edge, by ``edge_id``."""

    def __init__(self) -> None:
        self._edges: dict[str, Edge] = {}

    def __len__(self) -> int:
        return len(self._edges)

    def apply(self, change: Change) -> bool:
        """Apply one change; True if it altered the book."""
        if change.edge is None:
            return self._edges.pop(change.edge_id, None) is not None
        current = self._edges.get(change.edge_id)
        if current is not None and (current == change.edge or not supersedes(change.edge, current)):
            return False
        self._edges[change.edge_id] = change.edge
        return True

    def apply_all(self, changes: Iterable[Change]) -> EdgeBook:
        for change in changes:
            self.apply(change)
        return self

    def edges(self) -> list[Edge]:
        """Every edge, expired ones included, in ``edge_id`` order."""
        return [self._edges[key] for key in sorted(self._edges)]


def live(edges: Iterable[Edge]) -> list[Edge]:
    """The edges not expired: the calls the map shows by default."""
    return [edge for edge in edges if edge.event != "expired"]


@dataclass(frozen=True, slots=True)
class Write:
    """What a keyed store does for one edge in one batch."""

    edge_id: str
    delete_first: bool
    """A tombstone came in the batch: drop the stored row before any upsert."""
    upsert: Edge | None
    """The latest state after the last tombstone, or None (deleted for good)."""


def reduce_batch(changes: Iterable[Change]) -> list[Write]:
    """One :class:`Write` per edge of a batch, in order of first appearance."""
    writes: dict[str, Write] = {}
    for change in changes:
        before = writes.get(change.edge_id)
        if change.edge is None:
            writes[change.edge_id] = Write(change.edge_id, True, None)
            continue
        best = before.upsert if before else None
        if best is None or supersedes(change.edge, best):
            best = change.edge
        writes[change.edge_id] = Write(change.edge_id, bool(before and before.delete_first), best)
    return list(writes.values())
