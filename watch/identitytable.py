"""The published state of one identity topic, and the changes that keep it true.

An :class:`IdentityTable` remembers the last record it published under every
key, so it publishes only what changed; a deleted object's record is
republished with ``deleted`` set and kept for a retention, so that late
events still resolve against it, and only then followed by a tombstone.
:meth:`IdentityTable.reconcile` turns "these keys exist now" (a full list) into
deletions of every other live key, and :meth:`IdentityTable.adopt` starts the
table from what a previous leader left on the topic. Pure: time comes in as
arguments, changes go out through a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from callmap.wire import (
    NODES,
    PODS,
    SERVICES,
    ClusterInfo,
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    TopicSpec,
)

Identity = PodIdentity | ServiceIdentity | NodeIdentity
R = TypeVar("R", PodIdentity, ServiceIdentity, NodeIdentity)


@dataclass(frozen=True, slots=True)
class Change:
    """One message for an identity topic: a record, or a tombstone (``record`` None)."""

    topic: TopicSpec
    key: str
    record: Identity | ClusterInfo | None


Emit = Callable[[Change], None]


class IdentityTable(Generic[R]):
    """Last published record per key of one topic; emits only what changes."""

    def __init__(self, topic: TopicSpec, retention: float, emit: Emit) -> None:
        self.topic = topic
        self.retention = retention
        self._emit = emit
        self._records: dict[str, R] = {}
        self._expires: dict[str, float] = {}  # deleted keys -> when their tombstone is due

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> R | None:
        return self._records.get(key)

    def items(self) -> Iterator[tuple[str, R]]:
        return iter(list(self._records.items()))

    def live_keys(self) -> set[str]:
        return {key for key, record in self._records.items() if key not in self._expires}

    def adopt(self, key: str, record: R | None) -> None:
        """Take what the topic holds as published (``None``: a tombstone) without emitting.

        A record that carries ``deleted`` gets its tombstone when its retention
        ends, counted from its deletion time, as if this table had deleted it.
        """
        self._expires.pop(key, None)
        if record is None:
            self._records.pop(key, None)
            return
        self._records[key] = record
        if record.deleted is not None:
            self._expires[key] = record.deleted + self.retention

    def put(self, key: str, record: R) -> bool:
        """Publish ``record`` unless it is what was published last; True if emitted.

        A key that exists again (a service recreated under its name, a finished
        pod that a previous leader took for deleted) is live again: its
        pending tombstone is cancelled.
        """
        self._expires.pop(key, None)
        if self._records.get(key) == record:
            return False
        self._records[key] = record
        self._emit(Change(self.topic, key, record))
        return True

    def delete(self, key: str, now: float) -> bool:
        """The object is gone: republish it with ``deleted`` set (once); True if emitted.

        The tombstone follows ``retention`` seconds after the deletion time; a
        record that carries ``deleted`` already (a finished pod, a deleted
        entry of an inventory) keeps that time and publishes nothing new.
        """
        record = self._records.get(key)
        if record is None or key in self._expires:
            return False
        self._expires[key] = (
            record.deleted if record.deleted is not None else now
        ) + self.retention
        if record.deleted is not None:
            return False
        record = msgspec.structs.replace(record, deleted=now)
        self._records[key] = record
        self._emit(Change(self.topic, key, record))
        return True

    def reconcile(self, present: Iterable[str], now: float) -> list[str]:
        """After a full list: delete every live key that the list did not have."""
        present = present if isinstance(present, set | frozenset) else set(present)
        gone = [key for key in self._records if key not in present and key not in self._expires]
        for key in gone:
            self.delete(key, now)
        return gone

    def expire(self, now: float) -> list[R]:
        """Tombstones for every deleted key whose retention has ended; their last records."""
        due = [key for key, when in self._expires.items() if when <= now]
        gone = []
        for key in due:
            del self._expires[key]
            gone.append(self._records.pop(key))
            self._emit(Change(self.topic, key, None))
        return gone

    def clear(self) -> None:
        """Forget everything (leadership lost: the next term starts from the topic)."""
        self._records.clear()
        self._expires.clear()


class IdentityTables:
    """The three identity tables of one watcher, sharing retention and output."""

    def __init__(self, retention: float, emit: Emit) -> None:
        self.pods: IdentityTable[PodIdentity] = IdentityTable(PODS, retention, emit)
        self.services: IdentityTable[ServiceIdentity] = IdentityTable(SERVICES, retention, emit)
        self.nodes: IdentityTable[NodeIdentity] = IdentityTable(NODES, retention, emit)

    def adopt(self, topic: TopicSpec, key: str, record: Identity | None) -> None:
        """Route a record read back from ``topic`` to its table."""
        if topic is PODS and (record is None or isinstance(record, PodIdentity)):
            self.pods.adopt(key, record)
        elif topic is SERVICES and (record is None or isinstance(record, ServiceIdentity)):
            self.services.adopt(key, record)
        elif topic is NODES and (record is None or isinstance(record, NodeIdentity)):
            self.nodes.adopt(key, record)
        else:
            raise TypeError(f"{type(record).__name__} does not belong on {topic.name}")

    def expire(self, now: float) -> int:
        return sum(len(t.expire(now)) for t in (self.pods, self.services, self.nodes))

    def clear(self) -> None:
        for table in (self.pods, self.services, self.nodes):
            table.clear()
