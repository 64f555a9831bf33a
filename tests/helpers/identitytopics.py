"""What a consumer of the identity topics sees, for the watcher's tests."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from aiokafka import TopicPartition

from callmap.broker import describe_topics, make_consumer, read_to_end
from callmap.config import Settings
from callmap.counters import StageCounters
from callmap.wire import PodIdentity, TopicSpec, decode
from watch.identitytable import IdentityTables
from watch.readback import read_back


async def topics(settings: Settings, cluster: str) -> IdentityTables:
    """What a consumer reading the identity topics from the start sees for ``cluster``."""
    state = IdentityTables(math.inf, lambda change: None)
    await read_back(settings.kafka, cluster, state.adopt, StageCounters())
    return state


async def eventually(
    settings: Settings, cluster: str, check: Callable[[IdentityTables], None], timeout: float = 20
) -> IdentityTables:
    """The topics' state once ``check`` stops raising AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        state = await topics(settings, cluster)
        try:
            check(state)
            return state
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def history(settings: Settings, topic: TopicSpec, key: str) -> list[PodIdentity | None]:
    """Every message of ``key`` on ``topic``, oldest first (None: a tombstone)."""
    (described,) = await describe_topics(settings.kafka, [topic.name])
    partitions = [TopicPartition(topic.name, p) for p in range(described.partitions)]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        found: list[PodIdentity | None] = []
        async for message in read_to_end(consumer, partitions):
            if message.key == key.encode():
                record = None if message.value is None else decode(topic, message.value)
                assert record is None or isinstance(record, PodIdentity)
                found.append(record)
        return found
    finally:
        await consumer.stop()
