"""A lab run's check that the stream worker keeps up, on a real broker: a consumer
group is given ``behind`` seconds to commit what arrived on its topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition

from callmap.broker import ensure_topic, make_consumer, start_producer
from callmap.config import Settings
from lab.groupprogress import GroupProgress

pytestmark = pytest.mark.kafka

BEHIND = 0.5


async def produce(settings: Settings, topic: str, partition: int, count: int) -> None:
    producer = await start_producer(settings.kafka, 30.0)
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"record {n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = make_consumer(settings.kafka, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_a_group_keeps_up_once_it_committed_what_arrived_a_while_ago(
    settings: Settings,
) -> None:
    topic, group = f"progress-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    await ensure_topic(settings.kafka, topic, 2, 1, {})
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await produce(settings, topic, 0, 3)
    await commit(settings, group, {second: 0})  # a group that has committed none of them
    async with GroupProgress(settings.kafka, group, [topic], behind=BEHIND) as worker:
        assert not await worker.caught_up()  # not watched for BEHIND seconds yet
        await asyncio.sleep(BEHIND)
        assert not await worker.caught_up()  # nothing committed: 3 records behind
        assert worker.behind_now == 3
        await commit(settings, group, {first: 3})
        assert await worker.caught_up()  # the empty partition asks for nothing

        await produce(settings, topic, 1, 2)
        assert await worker.caught_up()  # arrived just now: the group has BEHIND seconds
        await asyncio.sleep(BEHIND)
        assert not await worker.caught_up()  # a stalled group stays behind
        assert worker.behind_now == 2
        await commit(settings, group, {second: 2})
        assert await worker.caught_up()


async def test_topics_not_made_yet_are_not_kept_up_with(settings: Settings) -> None:
    topic = f"progress-{uuid.uuid4().hex[:8]}"
    async with GroupProgress(settings.kafka, "nobody", [topic], behind=0.0) as worker:
        assert not await worker.caught_up()
