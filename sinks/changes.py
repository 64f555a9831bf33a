"""What a sink receives from the edges topic, and how lifecycle events order.

A message of the compacted edges topic is either an edge's latest state or a
tombstone (a null value) that deletes the edge. :class:`Change` carries one of
those, plus the :class:`Position` it was read at, so that append-only sinks can
tell a replay after a crash from new data.

Events of one edge order by ``(last_seen, event rank, count)``: a replayed or
late message never moves an edge's state backwards, and at the same sighting
time ``expired`` comes after ``refresh``, which comes after ``new``. Pure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from callmap.errors import WireDecodeError
from callmap.wire import Edge, TopicSpec, decode

TOMBSTONE_WITHOUT_KEY = "a tombstone needs a key"

EVENT_RANK: dict[str, int] = {"new": 0, "refresh": 1, "expired": 2}


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message was read: topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Change:
    """One edges-topic message: an edge's new state, or (``edge`` None) its deletion."""

    edge_id: str
    edge: Edge | None = None
    position: Position | None = None

    @classmethod
    def of(cls, edge: Edge, position: Position | None = None) -> Change:
        return cls(edge.edge_id, edge, position)

    @property
    def is_tombstone(self) -> bool:
        return self.edge is None


def read_change(
    spec: TopicSpec, key: bytes | None, value: bytes | None, position: Position | None = None
) -> Change:
    """The change one message of an edges topic carries.

    Raises :class:`~callmap.errors.WireDecodeError` for a tombstone without a
    UTF-8 key (reason :data:`TOMBSTONE_WITHOUT_KEY`) or a value that is not an edge.
    """
    if value is None:
        if key is None:
            raise WireDecodeError(spec.name, None, TOMBSTONE_WITHOUT_KEY)
        try:
            return Change(key.decode(), None, position)
        except UnicodeDecodeError:
            raise WireDecodeError(spec.name, None, TOMBSTONE_WITHOUT_KEY) from None
    edge = decode(spec, value)
    assert isinstance(edge, Edge)
    return Change.of(edge, position)


def order_key(edge: Edge) -> tuple[float, int, int]:
    """The key that orders an edge's lifecycle events (later sorts higher)."""
    return (edge.last_seen, EVENT_RANK.get(edge.event, 0), edge.count)


def supersedes(candidate: Edge, current: Edge) -> bool:
    """True if ``candidate`` is the same or a later state than ``current``."""
    return order_key(candidate) >= order_key(current)


def event_key(edge: Edge) -> str:
    """A stable id of one lifecycle event of one edge.

    The same message replayed yields the same key, so history tables and SIEM
    feeds can ignore a replay; two different events of an edge never share one.
    """
    text = f"{edge.edge_id}\0{edge.event}\0{edge.first_seen!r}\0{edge.last_seen!r}\0{edge.count}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
