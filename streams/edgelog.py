"""The merge stage's output in Kafka transactions: an edge's state and its
announcement land together, or neither does.

Each sightings partition this worker owns has a transactional producer of its
own, with the transactional id ``<app id>-merge-<partition>``. What the merge
stage asks to write for a partition (states to the changelog, announcements to
the edges topic) goes into that producer's open transaction, which is
committed every commit interval (the records wait in batches of their own,
handed to the producer at the commit: a record costs an append, not a send).
Only then are the consumed sightings acknowledged, so the offsets Faust
commits never pass work that is not committed. Hence:

- A worker killed at any moment leaves an open transaction, which is aborted:
  readers with ``isolation.level=read_committed`` (every callmap reader) never
  see its announcements, the next owner never recovers its states, and the
  sightings are read again from the last committed offset. Nothing is lost.
- A transaction committed before the sightings' offsets were is replayed
  against the states it wrote: a known edge is not announced ``new`` again.
- The next owner of a partition starts a producer with the same transactional
  id before it reads the partition's states. That aborts whatever the previous
  owner left open and fences it: a worker that lost a partition but did not
  notice (a long pause) is refused by the broker, and its next write or
  commit drops the partition, instead of announcing beside the new owner.

A write or a commit that does not finish (a producer waiting on a broker
that neither answers nor fails) holds its partition's lock, and so the merge
agent, and with it the worker's consumption: :meth:`EdgeLog.stalled` says so,
the worker's ``/healthz`` reports it, and the chart's liveness probe restarts
the worker, whose partitions go to another (or to it again, fresh). A commit
slower than :data:`SLOW_COMMIT` is logged and counted
(``edge_log_slow_commits``).

A new owner recovers a partition's states by reading the changelog partition
whole, committed records only. Faust's own tables are not used for this: they
recover without ``read_committed`` and do not end a recovery at a partition
whose last record is a transaction marker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder

from callmap.broker import make_consumer, make_producer, read_to_end, stop_quietly
from callmap.config import KafkaSettings
from callmap.counters import Counters
from callmap.wire import EDGES
from callmap.wire.topics import kafka_partition
from streams.mergestage import Merged, MergeStage

log = logging.getLogger(__name__)

DEFAULT_COMMIT_INTERVAL = 0.2
"""Seconds an edge log transaction stays open: announcements wait up to this long."""
DEFAULT_STALL_LIMIT = 60.0
"""Seconds a partition's write or commit may take before the worker counts as stuck."""
SLOW_COMMIT = 5.0
"""Seconds beyond which a commit is logged and counted as slow."""


@dataclass(frozen=True, slots=True)
class EdgeLogSettings:
    app_id: str
    """The stream app's id: transactional ids are ``<app id>-merge-<partition>``."""
    changelog: str
    """The topic of the edge states, one partition per sightings partition."""
    transaction_timeout: float
    """Seconds after which the broker aborts a transaction its producer left open."""
    batch_bytes: int
    """Bytes of one producer batch."""


@dataclass(slots=True)
class _Partition:
    """One owned partition: its producer and the transaction open on it."""

    producer: AIOKafkaProducer
    edge_partitions: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: bool = False
    closed: bool = False
    done: list[Callable[[], object]] = field(default_factory=list)
    """What to call once the open transaction is committed (the sightings' acks)."""
    batches: dict[tuple[str, int], BatchBuilder] = field(default_factory=dict)
    """The open transaction's records not handed to the producer yet, by topic and
    partition."""
    busy_since: float | None = None
    """When the write or commit now holding the lock began (monotonic); None: idle."""


class EdgeLog:
    """The merge stage's writes, one transaction per owned partition at a time."""

    def __init__(
        self,
        kafka: KafkaSettings,
        merge: MergeStage,
        settings: EdgeLogSettings,
        counters: Counters,
        on_failure: Callable[[BaseException], object] = lambda _: None,
    ) -> None:
        """``on_failure`` hears of an assignment that could not be taken over (its
        producers would not start, its states could not be read): the worker cannot
        go on without those partitions, and should stop."""
        self._kafka = kafka
        self._merge = merge
        self._settings = settings
        self._counters = counters
        self._on_failure = on_failure
        self._owned: dict[int, _Partition] = {}
        self._assigning: asyncio.Future[None] | None = None

    # --- ownership --------------------------------------------------------------

    def assign(self, partitions: Collection[int]) -> None:
        """The sightings partitions this worker owns from now on (every rebalance).

        Takes effect in the background, after any assignment still in progress;
        :meth:`owns` waits for it.
        """
        previous = self._assigning
        self._assigning = asyncio.ensure_future(self._assign(set(partitions), previous))
        self._assigning.add_done_callback(self._check)

    def _check(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and (error := done.exception()) is not None:
            log.error("could not take over the assigned partitions: %r", error)
            self._on_failure(error)

    async def owns(self, partition: int) -> bool:
        """Whether ``partition`` is this worker's, once its states are recovered."""
        if self._assigning is not None:
            await asyncio.shield(self._assigning)
        return partition in self._owned

    async def _assign(self, partitions: set[int], previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            await previous
        for partition in sorted(set(self._owned) - partitions):
            await self._release(partition)
        taken = sorted(partitions - set(self._owned))
        if taken:
            started = time.monotonic()
            for partition in taken:
                self._owned[partition] = await self._start(partition)
            recovered = await self._recover(taken)
            log.info(
                "took over partitions %s: %d edge states in %.1f s",
                taken,
                recovered,
                time.monotonic() - started,
            )
        dropped = self._merge.keep_only(set(self._owned))
        if dropped:
            log.info("forgot %d edges of partitions other workers own now", dropped)

    async def _start(self, partition: int) -> _Partition:
        """A producer for ``partition``: starting it aborts the transaction a previous
        owner left open, and fences that owner."""
        producer = make_producer(
            self._kafka,
            transactional_id=f"{self._settings.app_id}-merge-{partition}",
            transaction_timeout_ms=int(self._settings.transaction_timeout * 1000),
            max_batch_size=self._settings.batch_bytes,
            compression_type="lz4",
        )
        try:
            await producer.start()
            edge_partitions = len(await producer.partitions_for(EDGES.name))
        except BaseException:
            await stop_quietly(producer, f"edge log producer of partition {partition}")
            raise
        return _Partition(producer, edge_partitions)

    async def _recover(self, partitions: list[int]) -> int:
        """Read the committed states of ``partitions`` from the changelog."""
        table, count = self._merge.table, 0
        consumer = make_consumer(self._kafka)  # committed records only
        await consumer.start()
        try:
            wanted = [TopicPartition(self._settings.changelog, p) for p in partitions]
            async for message in read_to_end(consumer, wanted):
                count += 1
                if message.value:
                    table[message.key] = message.value
                else:
                    table.pop(message.key, None)
        finally:
            await consumer.stop()
        return count

    async def _release(self, partition: int) -> None:
        """A partition another worker owns now: commit what is open, stop its producer."""
        part = self._owned.pop(partition)
        await self._commit(partition, part)
        part.closed = True
        await stop_quietly(part.producer, f"edge log producer of partition {partition}")

    # --- writing ----------------------------------------------------------------

    async def write(self, partition: int, merged: Merged, done: Callable[[], object]) -> None:
        """Add ``merged`` to ``partition``'s open transaction; ``done`` is called once it
        is committed. A partition this worker does not own is not written, and ``done``
        not called: its owner reads the sightings again."""
        part = self._owned.get(partition)
        if part is None:
            return
        if not merged.stored and not merged.announced:
            if part.open:
                part.done.append(done)
            else:
                done()
            return
        changelog = self._settings.changelog
        async with part.lock:
            if part.closed:
                return
            if _fenced_meanwhile(part.producer):
                await self._drop_fenced(partition, part)
                return
            part.busy_since = time.monotonic()
            try:
                if not part.open:
                    await part.producer.begin_transaction()
                    part.open = True
                for stored in merged.stored:
                    await _add(part, changelog, stored.partition, stored.key, stored.value)
                for announced in merged.announced:
                    edge_partition = kafka_partition(announced.key, part.edge_partitions)
                    await _add(part, EDGES.name, edge_partition, announced.key, announced.value)
                part.done.append(done)
            finally:
                part.busy_since = None

    async def commit(self) -> None:
        """Commit every open transaction, then acknowledge what it holds."""
        await asyncio.gather(
            *(self._commit(partition, part) for partition, part in list(self._owned.items()))
        )

    async def _commit(self, partition: int, part: _Partition) -> None:
        async with part.lock:
            if not part.open or part.closed:
                return
            if _fenced_meanwhile(part.producer):
                await self._drop_fenced(partition, part)
                return
            started = part.busy_since = time.monotonic()
            try:
                for (topic, into), batch in part.batches.items():
                    await part.producer.send_batch(batch, topic, partition=into)
                part.batches.clear()
                await part.producer.commit_transaction()
            except ProducerFenced:
                await self._drop_fenced(partition, part)
                return
            finally:
                part.busy_since = None
            part.open = False
            done, part.done = part.done, []
        took = time.monotonic() - started
        if took > SLOW_COMMIT:
            self._counters.events["edge_log_slow_commits"] += 1
            log.warning("the edge log's commit of partition %d took %.1f s", partition, took)
        self._counters.events["edge_log_transactions"] += 1
        for acknowledge in done:
            acknowledge()

    async def _drop_fenced(self, partition: int, part: _Partition) -> None:
        """Another worker owns ``partition`` now and has fenced this one's producer."""
        self._counters.events["edge_log_fenced"] += 1
        log.warning("partition %d of the edges has another owner now: dropping it", partition)
        part.closed = True
        self._owned.pop(partition, None)
        self._merge.keep_only(set(self._owned))
        await stop_quietly(part.producer, f"fenced producer of partition {partition}")

    def _longest_busy(self) -> tuple[float, int]:
        """(seconds, partition) of the longest unfinished write or commit; (0, -1): none."""
        now = time.monotonic()
        busy = [
            (now - p.busy_since, partition)
            for partition, p in self._owned.items()
            if p.busy_since is not None
        ]
        return max(busy, default=(0.0, -1))

    def busy_seconds(self) -> float:
        """How long the longest unfinished write or commit has taken so far (0: none)."""
        return self._longest_busy()[0]

    def stalled(self, limit: float) -> str | None:
        """Why the edge log looks stuck: a write or commit unfinished for over ``limit``
        seconds (it holds its partition, and the worker's consumption with it)."""
        seconds, partition = self._longest_busy()
        if seconds <= limit:
            return None
        return (
            f"the edge log's write or commit of partition {partition} "
            f"has not finished for {seconds:.0f}s"
        )

    async def close(self) -> None:
        """Commit what is open and stop every producer (the worker stops)."""
        if self._assigning is not None:
            await asyncio.shield(self._assigning)
        for partition in sorted(self._owned):
            await self._release(partition)


async def _add(
    part: _Partition, topic: str, partition: int, key: bytes, value: bytes | None
) -> None:
    """Add a record to the open transaction's batch of ``topic``'s ``partition``.

    The batches go to the producer when the transaction is committed (or when
    one is full): a record costs an append, not a ``send`` with its own future,
    and each partition a produce request per transaction, not one every
    linger."""
    batch = part.batches.get((topic, partition))
    if batch is None:
        batch = part.batches[(topic, partition)] = part.producer.create_batch()
    if batch.append(timestamp=None, key=key, value=value) is not None:
        return
    await part.producer.send_batch(batch, topic, partition=partition)
    batch = part.batches[(topic, partition)] = part.producer.create_batch()
    if batch.append(timestamp=None, key=key, value=value) is None:
        raise ValueError(f"a record of {len(value or b'')} bytes is larger than a batch")


def _fenced_meanwhile(producer: AIOKafkaProducer) -> bool:
    """Whether ``producer`` learnt in the background that another owner fenced it.

    aiokafka's sender stops on a fenced produce request and leaves the error in
    the transaction manager only: the next ``send`` then refuses as if no
    transaction were open, and ``commit_transaction`` fails an assertion,
    neither of them with ``ProducerFenced``.
    """
    sender = producer._sender.sender_task
    if sender is None or not sender.done() or sender.cancelled():
        return False
    return isinstance(sender.exception(), ProducerFenced)
