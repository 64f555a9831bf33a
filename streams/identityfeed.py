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

from aiokafka import ConsumerRecord

from callmap.broker import make_consumer, read_to_end, topic_partitions
from callmap.config import KafkaSettings
from callmap.errors import WireDecodeError
from callmap.wire import IDENTITY_TOPICS
from streams.resolvestage import Identities

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
        partitions = await topic_partitions(self._kafka, [s.name for s in IDENTITY_TOPICS])
        consumer = make_consumer(self._kafka, client_id=f"{self._kafka.client_id}-identities")
        await consumer.start()
        try:
            async for message in read_to_end(consumer, partitions):
                await self._apply(message)
            self._ready()
            while True:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        await self._apply(message)
        finally:
            await consumer.stop()

    def _ready(self) -> None:
        log.info("identity store loaded: %d objects", self.size())
        self.ready.set()

    def size(self) -> int:
        return sum(len(r.store) for r in self._identities.resolvers.values())

    async def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        topic, partition, offset = message.topic, message.partition, message.offset
        key, value = message.key, message.value
        try:
            if key is None:
                raise WireDecodeError(topic, None, "identity message without a key")
            self._identities.apply(topic, key, value)
        except WireDecodeError as error:  # the dead letter says so in the log
            await self._dead_letter(topic, error, partition, offset, key, value or b"")
