"""Following the edges topic live: the current state of every edge, kept up to date.

Used by ``callmap metrics`` and ``callmap serve``. The follower reads the
compacted edges topic (``--global``: the hub's global edges) from its
beginning with no consumer group: it commits nothing, and a restart reads the
topic again, as ``callmap list`` does. Every message updates the current
state of its edge (:class:`~sinks.lifecycle.EdgeBook`); a message that does
not decode is counted and logged, never fatal. ``caught_up`` turns true once
the follower has read the topic up to where it ended at start, so nothing
shows half a map as the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from callmap.backoff import retrying
from callmap.broker import make_consumer, map_kafka_errors, topic_partitions
from callmap.config import KafkaSettings
from callmap.errors import WireDecodeError
from callmap.wire import EDGES, TopicSpec
from sinks.changes import Change, read_change
from sinks.endpoints import touches
from sinks.lifecycle import EdgeBook

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Follower:
    """The current state of every edge on the topic, kept up to date."""

    kafka: KafkaSettings
    topic: TopicSpec = EDGES
    clusters: frozenset[str] = frozenset()
    book: EdgeBook = field(default_factory=EdgeBook)
    on_change: Callable[[Change], None] | None = None
    """Called with each change that altered the book (after it did)."""
    rejected: int = 0
    caught_up: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        """Read the topic from its beginning, then follow it until ``stop`` is set."""
        partitions = await retrying(
            lambda: topic_partitions(self.kafka, [self.topic.name]), f"find {self.topic.name}"
        )
        consumer = make_consumer(self.kafka)
        with map_kafka_errors(f"read {self.topic.name}"):
            await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for messages in batch.values():
                    for message in messages:
                        self.take(message.key, message.value, message.offset)
                if not self.caught_up:
                    self.caught_up = await self._reached(consumer, ends)
        finally:
            await consumer.stop()

    async def _reached(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        """Whether every partition is read up to ``ends`` (where it ended at start)."""
        for partition, end in ends.items():
            if await consumer.position(partition) < end:
                return False
        log.info("read %s to where it ended at start: %d edges", self.topic.name, len(self.book))
        return True

    def take(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Apply one message of the topic (a tombstone when ``value`` is None)."""
        try:
            change = read_change(self.topic, key, value)
        except WireDecodeError as exc:
            self.rejected += 1
            log.warning("skipping %s@%d: %s", self.topic.name, offset, exc)
            return
        if change.edge is not None and self.clusters and not touches(change.edge, self.clusters):
            return
        if self.book.apply(change) and self.on_change is not None:
            self.on_change(change)
