"""The consumer loop every sink shares: read, add, flush durably, then commit.

The order is the one quix-streams writes down: messages are added to the sink,
the sink is flushed (and dead letters sent), and only then are the offsets
committed. A crash anywhere before the commit replays the uncommitted messages
into a sink that is idempotent (keyed stores) or skips what it already wrote
(append-only stores, through their journal), so the target ends the same.

While the target is away, the loop stops reading and retries the flush with
exponential backoff, counting every retried record: nothing is dropped, and
since the buffer is written whole and in order, no edge's lifecycle is
reordered. Undecodable messages are counted, logged and sent to the dead
letter topic. A rebalance forgets the offsets of partitions this consumer no
longer owns: their new owner replays them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from callmap.backoff import DEFAULT_START_TIMEOUT, Backoff, give_up_after, retrying
from callmap.broker import make_consumer, map_kafka_errors, start_producer, stop_quietly
from callmap.config import KafkaSettings
from callmap.errors import CallmapError, TemporaryError, WireDecodeError
from callmap.wire import DLQ, EDGES, DeadLetter, TopicSpec, encode
from sinks.changes import Position, read_change
from sinks.endpoints import touches
from sinks.service.destination import Sink

log = logging.getLogger(__name__)

PRODUCER_START_TIMEOUT = 30.0
"""Seconds the dead letter producer may take to connect before it counts as away."""


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How the loop reads and when it flushes."""

    group_id: str
    """Kafka consumer group; one per sink target (e.g. ``callmap-sink-sqlite``)."""
    batch_size: int = 500
    """Flush when this many records are buffered."""
    flush_interval: float = 1.0
    """Flush at least this often (seconds) while records wait."""
    initial_backoff: float = 0.5
    """First wait after a failed flush; doubles up to ``max_backoff``."""
    max_backoff: float = 30.0
    start_timeout: float = DEFAULT_START_TIMEOUT
    """Seconds to keep trying to reach Kafka at start; then starting fails for good."""
    topic: TopicSpec = EDGES
    """The edges topic (tests use a topic of their own with the same settings)."""
    dead_letters: TopicSpec | None = DLQ
    """Where undecodable messages go; None to only count them."""
    clusters: frozenset[str] = frozenset()
    """Only edges with a side in one of these clusters; others are skipped
    (``other_cluster``). Tombstones always pass: they carry no cluster."""


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pending: dict[TopicPartition, int]) -> None:
        self._pending = pending

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for partition in revoked:
            self._pending.pop(partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("sink assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in assigned))


class SinkRunner:
    """Drives one sink from a consumer group on the edges topic."""

    def __init__(
        self,
        kafka: KafkaSettings,
        sink: Sink,
        options: RunnerOptions,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kafka = kafka
        self.sink = sink
        self.stats = sink.stats
        self.options = options
        self._sleep = sleep
        self._clock = clock
        self._consumer: Any = None
        self._producer: Any = None
        self._pending: dict[TopicPartition, int] = {}
        self._dead: list[DeadLetter] = []
        self._waiting_since: float | None = None
        self.stop_requested = asyncio.Event()

    async def start(self) -> None:
        """Join the consumer group and open the target, retrying while either is away.

        Kafka gets ``start_timeout`` seconds: a sink that never reached its broker
        (a wrong address, a broker that is not there) raises the last
        :class:`TemporaryError` rather than wait unseen. The target is retried
        without end, as it is while running."""
        backoff = Backoff(self.options.initial_backoff, self.options.max_backoff)
        self._consumer = await retrying(
            self._start_consumer,
            "start the edges consumer",
            backoff,
            sleep=self._sleep,
            on_retry=give_up_after(
                self.options.start_timeout, self._clock, or_when=self.stop_requested.is_set
            ),
        )
        await self._retry("open the target", self.sink.open)

    async def _start_consumer(self) -> Any:
        consumer = make_consumer(self.kafka, group_id=self.options.group_id)
        consumer.subscribe([self.options.topic.name], listener=_Revocations(self._pending))
        try:
            with map_kafka_errors("start the edges consumer"):
                await consumer.start()
        except BaseException:
            await stop_quietly(consumer, "the edges consumer")
            raise
        return consumer

    async def poll(self, timeout: float) -> int:
        """Read what is there (waiting up to ``timeout``) into the sink; return the count."""
        room = max(1, self.options.batch_size - self.sink.buffered)
        with map_kafka_errors("read the edges topic"):
            batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=room)
        count = 0
        for partition, messages in batch.items():
            for message in messages:
                self._take(partition, message)
                self._pending[partition] = message.offset + 1
                count += 1
        if count and self._waiting_since is None:
            self._waiting_since = self._clock()
        return count

    def _take(self, partition: TopicPartition, message: Any) -> None:
        self.stats.received += 1
        position = Position(partition.topic, partition.partition, message.offset)
        try:
            change = read_change(self.options.topic, message.key, message.value, position)
        except WireDecodeError as exc:
            if message.value is None:
                self._reject(partition, message, "tombstone_without_key", exc.reason)
            else:
                self._reject(partition, message, "undecodable", str(exc))
            return
        edge, clusters = change.edge, self.options.clusters
        if edge is not None and clusters and not touches(edge, clusters):
            self.stats.skip("other_cluster")
            return
        self.sink.add(change)

    def _reject(self, partition: TopicPartition, message: Any, reason: str, error: str) -> None:
        self.stats.fail(reason)
        log.warning(
            "skipping %s[%d]@%d: %s", partition.topic, partition.partition, message.offset, error
        )
        if self.options.dead_letters is None:
            return
        self._dead.append(
            DeadLetter(
                ts=time.time(),
                stage=f"sink-{self.sink.kind}",
                error=error,
                topic=partition.topic,
                partition=partition.partition,
                offset=message.offset,
                key_b64=base64.b64encode(message.key).decode() if message.key else None,
                payload_b64=base64.b64encode(message.value or b"").decode(),
                reason=reason,
            )
        )

    async def flush(self) -> None:
        """Make everything read so far durable (sink, then dead letters), retrying."""
        await self._retry("write to the target", self.sink.flush)
        if self._dead:
            await self._retry("send dead letters", self._send_dead_letters)

    async def commit(self) -> None:
        """Commit the offsets of everything flushed, for partitions still owned."""
        owned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in self._pending.items() if tp in owned}
        self._pending.clear()
        self._waiting_since = None
        if not offsets:
            return
        try:
            await self._retry("commit offsets", lambda: self._commit(offsets))
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offsets not committed (the group rebalanced: %s); they will replay", exc)
            return
        self.stats.commits += 1

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError):
            raise
        except KafkaError as exc:  # the coordinator moving or away: it passes
            raise TemporaryError(f"commit offsets: {exc}") from exc

    async def flush_and_commit(self) -> None:
        await self.flush()
        await self.commit()

    def _due(self, polled: int) -> bool:
        if not (self.sink.buffered or self._pending or self._dead):
            return False
        if polled == 0 or self.sink.buffered >= self.options.batch_size:
            return True
        waited = self._clock() - (self._waiting_since or self._clock())
        return waited >= self.options.flush_interval

    def request_stop(self) -> None:
        """Make :meth:`run` return after its current step, and retries give up."""
        self.stop_requested.set()

    async def run(self, *, until_caught_up: bool = False) -> None:
        """Read, flush and commit until asked to stop (or, if asked, until caught up)."""
        while not self.stop_requested.is_set():
            polled = await self.poll(min(self.options.flush_interval, 0.5))
            if self._due(polled):
                await self.flush_and_commit()
            if until_caught_up and polled == 0 and not self._pending and await self.caught_up():
                return

    async def caught_up(self) -> bool:
        """True when every assigned partition has been read to its end and committed.

        False when a rebalance takes a partition away while its position is read
        (aiokafka's IllegalStateError): the next poll looks again, at the new
        assignment, instead of the error stopping the run."""
        assigned = list(self._consumer.assignment())
        if not assigned or self._pending or self.sink.buffered:
            return False
        with map_kafka_errors("read end offsets"):
            ends = await self._consumer.end_offsets(assigned)
            for partition in assigned:
                try:
                    position = await self._consumer.position(partition)
                except IllegalStateError:
                    return False
                if position < ends[partition]:
                    return False
        return True

    async def close(self, *, commit: bool = True) -> None:
        """Stop; with ``commit``, flush and commit first (best effort: one try)."""
        self.request_stop()
        if commit and self._consumer is not None:
            try:
                await self.flush_and_commit()
            except CallmapError as exc:
                log.warning("stopping without a final commit: %s", exc)
        await self.sink.close()
        producer, self._producer = self._producer, None
        await stop_quietly(producer, "the dead letter producer")
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _retry(self, action: str, attempt: Callable[[], Awaitable[None]]) -> None:
        def counted(exc: TemporaryError) -> None:
            if self.stop_requested.is_set():
                raise exc  # stopping: the caller closes without committing
            self.stats.retried += self.sink.buffered

        backoff = Backoff(self.options.initial_backoff, self.options.max_backoff)
        await retrying(attempt, action, backoff, sleep=self._sleep, on_retry=counted)

    async def _send_dead_letters(self) -> None:
        assert self.options.dead_letters is not None
        if self._producer is None:
            try:
                with map_kafka_errors("start the dead letter producer"):
                    self._producer = await start_producer(self.kafka, PRODUCER_START_TIMEOUT)
            except TimeoutError:
                raise TemporaryError("start the dead letter producer: timed out") from None
        with map_kafka_errors("send dead letters"):
            for letter in self._dead:
                await self._producer.send(self.options.dead_letters.name, encode(letter))
            await self._producer.flush()
        self._dead.clear()
