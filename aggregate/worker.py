"""``callmap aggregate``'s worker: the Kafka adapter around the pure ledger.

Each worker reads, with plain aiokafka consumers and no committed offsets:

- every identity topic of every cluster (mirrored ``<alias>.callmap.pods.v1``
  or shared ``callmap.pods.v1``), whole, into :class:`Identities`;
- every cluster's edges topic, from the beginning (they are compacted: that is
  the current graph), and keeps the source edges whose *client* is in a
  cluster it owns;

committed records only (MirrorMaker 2 writes to the hub in transactions). It
publishes the global edges of the clusters it owns on
``callmap.global-edges.v1``, each to the partition of its client's cluster.

Work is shared by cluster: workers join one consumer group on the global
topic, and partition ``p`` of it belongs to its owner together with every
cluster whose name hashes to ``p``. The group is only membership: the
partitions stay paused. On every assignment the worker rebuilds: it reads its
partitions of the global topic back (what it announced), replays every source
edge silently, and settles the difference (:mod:`aggregate.ledger`). So a
restarted or rebalanced worker never announces an edge ``new`` twice, and a
killed one loses nothing that was acknowledged. Topics that appear later (a
new cluster mirrored in) are found every ``discover_interval`` and read from
their beginning.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from aggregate.clusterset import ClusterSet
from aggregate.globalize import Globalizer, Pair
from aggregate.identities import Identities
from aggregate.ledger import Ledger, LedgerSettings, source_key
from aggregate.sources import SourceTopic, source_topic
from aggregate.waiting import Waiting
from callmap.backoff import DEFAULT_START_TIMEOUT, give_up_after, retrying
from callmap.broker import (
    ensure_topics,
    make_consumer,
    read_to_end,
    start_producer,
    stop_quietly,
    topic_partitions,
)
from callmap.config import KafkaSettings, TopicSettings
from callmap.counters import Counters
from callmap.errors import WireDecodeError
from callmap.wire import EDGES, GLOBAL_EDGES, Edge, decode, encode
from callmap.wire.topics import HUB_TOPICS

log = logging.getLogger(__name__)

DEFAULT_GROUP = "callmap-aggregate"


def cluster_partition(cluster: str, partitions: int) -> int:
    """The partition of the global topic, and so the worker, that owns ``cluster``."""
    return int(hashlib.sha256(cluster.encode()).hexdigest()[:8], 16) % partitions


@dataclass(frozen=True, slots=True)
class AggregateOptions:
    group_id: str = DEFAULT_GROUP
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    tick_interval: float = 5.0
    """How often refreshes that are due go out (seconds)."""
    expiry_interval: float = 60.0
    """How often contributions older than the TTL are looked for (seconds)."""
    discover_interval: float = 10.0
    """How often new clusters' topics are looked for (seconds)."""
    reresolve_interval: float = 10.0
    """How often edges with unresolved ends, or to a clusterset name, are named again
    after identities changed."""
    grace: float = 60.0
    """How long a new edge the hub cannot name yet waits for identities before it is
    announced with the raw address (seconds; :mod:`aggregate.waiting`)."""
    stale_log_interval: float = 60.0
    """How often stale clusters are logged (seconds)."""
    max_records: int = 5000
    """Messages taken per read."""
    start_timeout: float = DEFAULT_START_TIMEOUT
    """How long to keep trying to reach Kafka at start before failing (seconds)."""


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: AggregateWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.flush()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._worker.assigned({tp.partition for tp in assigned})


class AggregateWorker:
    """One aggregator process; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        clusterset: ClusterSet,
        options: AggregateOptions,
        counters: Counters,
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.options = options
        self.counters = counters
        self.identities = Identities(counters)
        self.globalizer = Globalizer(
            self.identities.stores, clusterset, counters.stage("cross_cluster")
        )
        self.ledger = Ledger(options.ledger, counters)
        self.owned: frozenset[int] = frozenset()
        self.partitions = 0
        """Partitions of the global topic."""
        self.ready = asyncio.Event()
        """Set once the first replay settled: the global topic is complete for the owned
        clusters."""
        self._rebuild = False
        self._replay_ends: dict[TopicPartition, int] | None = None
        self._sources: dict[str, SourceTopic] = {}
        self._unresolved: dict[str, tuple[str, Edge]] = {}
        """Source edges named again when identities change: an end still an ``ip`` or a
        clusterset name (the clusters exporting it may change)."""
        self._waiting = Waiting(options.grace)
        self._resolved_version = 0
        self._producer: AIOKafkaProducer | None = None
        self._outbox: list[Edge] = []
        self._partitions_of: dict[str, int] = {}

    # --- the loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        states = await retrying(
            lambda: ensure_topics(self.kafka, self.topics, HUB_TOPICS),
            "create topics",
            on_retry=give_up_after(self.options.start_timeout, or_when=stop.is_set),
        )
        self.partitions = states[0].partitions
        kwargs = {
            "client_id": self.kafka.client_id,
            "max_poll_records": self.options.max_records,
            # MirrorMaker 2 writes to the hub in transactions: an aborted one's copies
            # are never read (they would change nothing, but they cost a decode each).
            "isolation_level": "read_committed",
        }
        identity_reader = make_consumer(self.kafka, **kwargs)
        edge_reader = make_consumer(self.kafka, **kwargs)
        restorer = make_consumer(self.kafka, **kwargs)
        group = make_consumer(self.kafka, group_id=self.options.group_id, **kwargs)
        clients: list[AIOKafkaConsumer] = [identity_reader, edge_reader, restorer, group]
        try:
            self._producer = await start_producer(self.kafka, 30.0, linger_ms=20)
            for client in clients:
                await client.start()
            await self._discover(identity_reader, edge_reader)
            await self._load_identities(identity_reader)
            group.subscribe([GLOBAL_EDGES.name], listener=_Membership(self))
            await self._loop(stop, group, identity_reader, edge_reader, restorer)
        finally:
            await self.flush()
            for client in clients:
                await stop_quietly(client, "aggregate consumer")
            await stop_quietly(self._producer, "aggregate producer")

    async def _loop(
        self,
        stop: asyncio.Event,
        group: AIOKafkaConsumer,
        identity_reader: AIOKafkaConsumer,
        edge_reader: AIOKafkaConsumer,
        restorer: AIOKafkaConsumer,
    ) -> None:
        options = self.options
        last = dict.fromkeys(("tick", "expiry", "discover", "resolve", "stale"), time.monotonic())
        while not stop.is_set():
            await group.getmany(timeout_ms=0)  # membership only: keeps this worker in the group
            group.pause(*group.assignment())
            if self._rebuild:
                await self._restore(restorer, edge_reader)
            await self._read_identities(identity_reader)
            await self._read_edges(edge_reader)
            now = time.time()
            clock = time.monotonic()
            if self._replay_ends is not None and await _reached(edge_reader, self._replay_ends):
                self._replay_ends = None
                self._publish(self.ledger.settle(now))
                self.ready.set()
                log.info("global edges settled: %d owned by this worker", len(self.ledger.edges))
            if clock - last["tick"] >= options.tick_interval:
                last["tick"] = clock
                self._publish(self.ledger.refresh_due(now))
                self._end_waits(now)
            if clock - last["expiry"] >= options.expiry_interval:
                last["expiry"] = clock
                self._publish(self.ledger.expire_stale(now))
            if clock - last["resolve"] >= options.reresolve_interval:
                last["resolve"] = clock
                self._resolve_again(now)
            if clock - last["discover"] >= options.discover_interval:
                last["discover"] = clock
                await self._discover(identity_reader, edge_reader)
            if clock - last["stale"] >= options.stale_log_interval:
                last["stale"] = clock
                self._log_stale(now)
            await self.flush()

    # --- membership and rebuilds ------------------------------------------------

    def assigned(self, partitions: set[int]) -> None:
        """The group gave this worker ``partitions`` of the global topic: rebuild."""
        self.owned = frozenset(partitions)
        self._rebuild = True
        log.info("owning partitions %s of %s", sorted(partitions), GLOBAL_EDGES.name)

    async def _restore(self, restorer: AIOKafkaConsumer, edge_reader: AIOKafkaConsumer) -> None:
        """Read back what this worker's partitions announced, then replay every source edge."""
        self._rebuild = False
        self.ledger.clear()
        self._unresolved.clear()
        self._waiting.clear()
        self.ledger.replaying = True
        owned = [TopicPartition(GLOBAL_EDGES.name, p) for p in sorted(self.owned)]
        restored = 0
        if owned:
            async for message in read_to_end(restorer, owned):
                if message.value is None:
                    continue
                try:
                    edge = decode(GLOBAL_EDGES, message.value)
                except WireDecodeError as exc:
                    self._undecodable(exc)
                    continue
                assert isinstance(edge, Edge)
                self.ledger.restore(edge, message.timestamp / 1000)
                restored += 1
        partitions = list(edge_reader.assignment())
        if partitions:
            await edge_reader.seek_to_beginning(*partitions)
            self._replay_ends = await edge_reader.end_offsets(partitions)
        else:
            self._replay_ends = {}
        log.info("restored %d global edge messages; replaying every cluster's edges", restored)

    # --- reading ----------------------------------------------------------------

    async def _discover(
        self, identity_reader: AIOKafkaConsumer, edge_reader: AIOKafkaConsumer
    ) -> None:
        """Find every cluster's topics; read new ones from their beginning."""
        names = await identity_reader.topics()
        found = {name: s for name in names if (s := source_topic(name)) is not None}
        new = {name: s for name, s in found.items() if name not in self._sources}
        if not new:
            return
        self._sources.update(new)
        identity_names = [n for n, s in new.items() if s.spec is not EDGES]
        edge_names = [n for n, s in new.items() if s.spec is EDGES]
        log.info("reading %s", ", ".join(sorted(new)))
        await _add(identity_reader, await topic_partitions(self.kafka, identity_names))
        added = await topic_partitions(self.kafka, edge_names)
        await _add(edge_reader, added)
        if self._replay_ends is not None and added:  # a replay in progress covers them too
            self._replay_ends.update(await edge_reader.end_offsets(added))

    async def _load_identities(self, reader: AIOKafkaConsumer) -> None:
        partitions = list(reader.assignment())
        ends = await reader.end_offsets(partitions) if partitions else {}
        while partitions and not await _reached(reader, ends):
            await self._read_identities(reader, timeout_ms=500)
        self._resolved_version = self.identities.version
        log.info(
            "identities loaded: %d objects in %d clusters",
            len(self.identities),
            len(self.identities.stores),
        )

    async def _read_identities(self, reader: AIOKafkaConsumer, timeout_ms: int = 0) -> None:
        if not reader.assignment():
            return
        now = time.time()
        batch = await reader.getmany(timeout_ms=timeout_ms, max_records=self.options.max_records)
        for tp, messages in batch.items():
            source = self._sources[tp.topic]
            for message in messages:
                try:
                    self.identities.apply(source, message.key, message.value, now)
                except WireDecodeError as exc:
                    self._undecodable(exc)

    async def _read_edges(self, reader: AIOKafkaConsumer) -> None:
        if not reader.assignment():
            await asyncio.sleep(0.1)
            return
        batch = await reader.getmany(timeout_ms=100, max_records=self.options.max_records)
        now = time.time()
        stage = self.counters.stage("source_edges")
        for tp, messages in batch.items():
            source = self._sources[tp.topic]
            for message in messages:
                stage.seen += 1
                if message.value is None:
                    stage.drop("tombstone")
                    continue
                try:
                    edge = decode(EDGES, message.value)
                except WireDecodeError as exc:
                    self._undecodable(exc)
                    continue
                assert isinstance(edge, Edge)
                cluster = source.cluster_of(edge.cluster)
                if source.alias is not None and edge.cluster != source.alias:
                    self.counters.events["alias_differs_from_record_cluster"] += 1
                self.identities.health.heard(cluster, now)
                self._source_edge(cluster, edge, now)

    def _source_edge(self, cluster: str, edge: Edge, now: float, final: bool = False) -> None:
        """One source edge of ``cluster``: what it means for the clusters this worker owns.

        A new one that cannot be named yet waits (:mod:`aggregate.waiting`) unless
        ``final``: its wait ended."""
        key = source_key(cluster, edge.edge_id)
        if edge.event == "expired":
            self._unresolved.pop(key, None)
            self._waiting.drop(key)
            self._publish(self.ledger.withdraw(key))
            return
        client_cluster = self.globalizer.client_cluster(cluster, edge)
        mine = client_cluster is not None and self._owns(client_cluster)
        if not mine and key not in self.ledger.by_source:
            self._waiting.drop(key)
            return
        pairs = self.globalizer.pairs(cluster, edge) if mine else []
        pairs = [pair for pair in pairs if pair[0].cluster and self._owns(pair[0].cluster)]
        unresolved = mine and self.globalizer.unresolved(pairs)
        if unresolved and not final and self._waits(key, cluster, edge, pairs, now):
            return
        self._waiting.drop(key)
        self._publish(self.ledger.contribute(key, edge, pairs, now, cluster))
        if unresolved or (mine and self.globalizer.follows_exports(edge)):
            self._unresolved[key] = (cluster, edge)
        else:
            self._unresolved.pop(key, None)
        self.counters.stage("source_edges").emitted += 1

    def _waits(self, key: str, cluster: str, edge: Edge, pairs: list[Pair], now: float) -> bool:
        """Hold a new edge the hub cannot name yet. One announced already is named in
        place: it contributes now, or (in a replay) its global edge was restored as
        announced, and holding it would make the replay's settling expire that edge.

        A replay holds the others as the live stream does: the identities loaded at
        start are only what had reached the hub, and a mirror may still be copying
        the rest."""
        if key in self.ledger.by_source or (self.ledger.replaying and self.ledger.announced(pairs)):
            return False
        first = key not in self._waiting
        held = self._waiting.wait(key, cluster, edge, now)
        if held and first:
            self.counters.events["source_edge_waits"] += 1
        return held

    def _end_waits(self, now: float) -> None:
        """Announce the waiting edges whose grace ended, with what is known of them."""
        for waiter in self._waiting.take_due(now):
            self.counters.events["source_edge_unnamed_after_grace"] += 1
            self._source_edge(waiter.cluster, waiter.edge, now, final=True)

    def _resolve_again(self, now: float) -> None:
        """Identities changed: name again the edges that had an end nobody was known for,
        and the waiting ones."""
        if self.identities.version == self._resolved_version or self._replay_ends is not None:
            return
        self._resolved_version = self.identities.version
        for cluster, edge in list(self._unresolved.values()):
            self._source_edge(cluster, edge, now)
        for waiter in self._waiting.waiters():
            self._source_edge(waiter.cluster, waiter.edge, now)

    def waiting(self) -> int:
        """How many new edges wait for identities."""
        return len(self._waiting)

    def _owns(self, cluster: str) -> bool:
        return self._partition_of(cluster) in self.owned

    def _partition_of(self, cluster: str) -> int:
        partition = self._partitions_of.get(cluster)
        if partition is None:
            partition = self._partitions_of[cluster] = cluster_partition(cluster, self.partitions)
        return partition

    # --- writing ----------------------------------------------------------------

    def _publish(self, edges: Iterable[Edge]) -> None:
        """Queue announcements; :meth:`flush` sends them in order."""
        self._outbox.extend(edges)

    async def flush(self) -> None:
        """Send what is queued, in order, and wait until all of it is acknowledged."""
        producer = self._producer
        outbox, self._outbox = self._outbox, []
        if producer is None or not outbox:
            return
        stage = self.counters.stage("global_edges")
        sent = []
        for edge in outbox:
            sent.append(
                await producer.send(
                    GLOBAL_EDGES.name,
                    encode(edge),
                    key=edge.edge_id.encode(),
                    partition=self._partition_of(edge.cluster),
                )
            )
        await asyncio.gather(*sent)
        stage.emitted += len(outbox)

    # --- operations -------------------------------------------------------------

    def _undecodable(self, exc: WireDecodeError) -> None:
        self.counters.stage("decode").drop("undecodable")
        log.warning("skipped a message that does not decode: %s", exc)

    def _log_stale(self, now: float) -> None:
        stale = self.identities.health.stale(now)
        if stale:
            log.warning("clusters without a heartbeat: %s", ", ".join(stale))


async def _add(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Add ``partitions`` to ``consumer``'s assignment, read from their beginning,
    keeping the positions of those it had."""
    if not partitions:
        return
    old = list(consumer.assignment())
    positions = {tp: await consumer.position(tp) for tp in old}
    consumer.assign([*old, *partitions])
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*partitions)


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if tp in consumer.assignment() and await consumer.position(tp) < end:
            return False
    return True
