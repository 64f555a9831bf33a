"""What one capture agent published: a node's messages on a topic after a starting point."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import TopicPartition

from callmap.broker import describe_topics, make_consumer
from callmap.config import Settings
from callmap.wire import Record, decode
from callmap.wire.topics import topic_by_name


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """Where each partition of ``topic`` ends now: what comes later is the test's."""
    (state,) = await describe_topics(settings.kafka, [topic])
    partitions = [TopicPartition(topic, p) for p in range(state.partitions)]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        consumer.assign(partitions)  # aiokafka cannot stop a consumer that never had one
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def collect(
    settings: Settings,
    topic: str,
    start: dict[TopicPartition, int],
    node: str,
    until: Callable[[list[Record]], bool],
    timeout: float = 30.0,
) -> list[Record]:
    """The records ``node`` published on ``topic`` after ``start``, read until ``until``
    says enough or ``timeout`` passes."""
    spec = topic_by_name(topic)
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    found: list[Record] = []
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(found):
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    if message.key == node.encode():
                        found.append(decode(spec, message.value))
        return found
    finally:
        await consumer.stop()
