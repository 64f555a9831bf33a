"""The merge stage: sightings in, edge states and announcements out. Pure.

Each worker owns the edges of its partitions of the sightings topic. For every
sighting it updates the edge's state (:func:`streams.edges.sighted`), and on a
tick of a partition it refreshes what is due and expires what is stale among
that partition's edges. What comes out is what the adapter must write: the
states for the changelog (``None`` forgets an edge) and the announcements for
the public edges topic, both in one transaction (:mod:`streams.edgelog`), so
that neither lands without the other.

The table is any mapping of ``edge_id`` bytes to encoded :class:`EdgeState`
(a dict the edge log fills from the changelog in the worker). Ticks go
through a per-partition index of keys, built from the table on first use, so
a tick reads only its partition's edges. After each rebalance
:meth:`MergeStage.keep_only` drops the edges of partitions another worker owns
now and forgets the index (:meth:`MergeStage.forget_index` forgets it alone).
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from dataclasses import dataclass, field

from callmap.counters import Counters
from callmap.wire import SightingBatch, encode
from callmap.wire.topics import owner_partition
from streams.edges import due, dump_state, expired, load_state, sighted

DROP_HEALTH_WITHOUT_EDGE = "health_without_edge"
"""Health alone (failed connects, ends of connections) for an edge that does not exist
(never answered, or expired): a failed connect makes no edge."""


@dataclass(frozen=True, slots=True)
class Stored:
    """An edge state to write to the table's changelog; ``value`` None forgets the edge."""

    partition: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Announced:
    """An edge event for the public edges topic, encoded, keyed by ``edge_id``."""

    key: bytes
    value: bytes
    event: str


@dataclass(slots=True)
class Merged:
    """What one step of the merge stage asks the adapter to write, changelog first."""

    stored: list[Stored] = field(default_factory=list)
    announced: list[Announced] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MergeSettings:
    refresh_interval: float
    """An edge seen again is re-announced at most this often (seconds)."""
    ttl: float
    """An edge unseen for this long is announced ``expired`` (seconds)."""
    partitions: int
    """Partitions of the sightings topic (and of the table)."""


class MergeStage:
    """The edges of this worker's partitions and their lifecycle."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        settings: MergeSettings,
        counters: Counters,
    ) -> None:
        self.table = table
        self.settings = settings
        self.counters = counters
        self._index: dict[int, set[bytes]] | None = None

    def sightings(self, partition: int, batch: SightingBatch, now: float) -> Merged:
        """Fold one batch of sightings of ``partition`` into the edges."""
        merged = Merged()
        self.counters.stage("merge").seen += len(batch.sightings)
        table, refresh = self.table, self.settings.refresh_interval
        for sighting in batch.sightings:
            key = sighting.edge_id.encode()
            stored = table.get(key)
            if stored is None and not sighting.count:
                self.counters.stage("merge").drop(DROP_HEALTH_WITHOUT_EDGE)
                continue
            state, edge = sighted(
                None if stored is None else load_state(stored), sighting, now, refresh
            )
            self._keep(merged, partition, key, dump_state(state))
            if edge is not None:
                self._announce(merged, key, encode(edge), edge.event)
        return merged

    def tick(self, partition: int, now: float) -> Merged:
        """Refresh what is due and expire what is stale among ``partition``'s edges."""
        merged = Merged()
        keys, table = self._keys_of(partition), self.table
        for key in list(keys):
            stored = table.get(key)
            if stored is None:
                keys.discard(key)
                continue
            state = load_state(stored)
            gone = expired(state, now, self.settings.ttl)
            if gone is not None:
                self._keep(merged, partition, key, None)
                self._announce(merged, key, encode(gone), "expired")
                continue
            refreshed = due(state, now, self.settings.refresh_interval)
            if refreshed is not None:
                self._keep(merged, partition, key, dump_state(state))
                self._announce(merged, key, encode(refreshed), "refresh")
        return merged

    def forget_index(self) -> None:
        """After a rebalance: the partitions' keys are indexed again on the next tick."""
        self._index = None

    def keep_only(self, partitions: Collection[int]) -> int:
        """After a rebalance, once the table is recovered: forget the edges of every other
        partition (their new owner recovers them from the changelog); how many went."""
        count = self.settings.partitions
        stale = [
            key for key in self.table if owner_partition(key.decode(), count) not in partitions
        ]
        for key in stale:
            del self.table[key]
        self._index = None
        return len(stale)

    def _keep(self, merged: Merged, partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.table.pop(key, None)
            self._keys_of(partition).discard(key)
        else:
            self.table[key] = value
            self._keys_of(partition).add(key)
        merged.stored.append(Stored(partition, key, value))

    def _announce(self, merged: Merged, key: bytes, value: bytes, event: str) -> None:
        merged.announced.append(Announced(key, value, event))
        self.counters.stage("edges").emitted += 1
        self.counters.events[f"edge_{event}"] += 1

    def _keys_of(self, partition: int) -> set[bytes]:
        """The keys of ``partition``'s edges, indexed from the table on first use."""
        if self._index is None:
            count = self.settings.partitions
            index: dict[int, set[bytes]] = {}
            for key in self.table:
                index.setdefault(owner_partition(key.decode(), count), set()).add(key)
            self._index = index
        return self._index.setdefault(partition, set())
