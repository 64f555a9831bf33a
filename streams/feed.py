"""Every worker's copy of the identity topics, read with a plain aiokafka consumer.

Each worker reads *all* partitions of the compacted pods, services and nodes
topics from the beginning (no consumer group), so every worker has the whole
identity store: the equivalent of a Faust global table, without per-message
agent overhead, and rebuilt from the compacted topics after any restart or
rebalance. ``ready`` is set once the initial backlog up to the end offsets
seen at start is applied; the stream agents wait for it, so that a restarted
worker does not take every event for a late one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from callmap.broker import describe_topics, make_consumer
from callmap.config import KafkaSettings
from callmap.errors import WireDecodeError
from callmap.wire import IDENTITY_TOPICS
from streams.stage import Identities

log = logging.getLogger(__name__)

DeadLetter = Callable[[str, WireDecodeError, int, int, bytes | None, bytes], Awaitable[None]]


class IdentityFeed:
    """Applies the identity topics to :class:`Identities`, forever."""

    def __init__(
        self, kafka: KafkaSettings, identities: Identities, dead_letter: DeadLetter
    ) -> None:
        self._kafka = kafka
        self._identities = identities
        self._dead_letter = dead_letter
        self.ready = asyncio.Event()

    async def run(self) -> None:
        names = [spec.name for spec in IDENTITY_TOPICS]
        states = await describe_topics(self._kafka, names)
        partitions = [TopicPartition(s.name, p) for s in states for p in range(s.partitions)]
        consumer = make_consumer(self._kafka, client_id=f"{self._kafka.client_id}-identities")
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            behind = {tp for tp, offset in end.items() if offset > 0}
            if not behind:
                self._ready()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, messages in batch.items():
                    for message in messages:
                        await self._apply(tp, message.offset, message.key, message.value)
                    if tp in behind and messages and messages[-1].offset + 1 >= end[tp]:
                        behind.discard(tp)
                if behind and not batch:  # compaction may have removed the last offsets
                    for tp in list(behind):
                        if await consumer.position(tp) >= end[tp]:
                            behind.discard(tp)
                if not behind and not self.ready.is_set():
                    self._ready()
        finally:
            await consumer.stop()

    def _ready(self) -> None:
        log.info("identity store loaded: %d objects", self.size())
        self.ready.set()

    def size(self) -> int:
        return sum(len(r.store) for r in self._identities.resolvers.values())

    async def _apply(
        self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        try:
            if key is None:
                raise WireDecodeError(tp.topic, None, "identity message without a key")
            self._identities.apply(tp.topic, key, value)
        except WireDecodeError as error:
            log.warning("dead-lettering %s[%d]@%d: %s", tp.topic, tp.partition, offset, error)
            await self._dead_letter(tp.topic, error, tp.partition, offset, key, value or b"")
