"""The wire contract against a real Kafka broker: topics, round trips, bad messages."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from callmap.broker import (
    admin_client,
    describe_topics,
    ensure_topics,
    make_consumer,
    make_producer,
    read_to_end,
)
from callmap.config import Settings
from callmap.errors import WireDecodeError
from callmap.wire import (
    ALL_TOPICS,
    DNS,
    DnsAnswer,
    DnsAnswerBatch,
    Record,
    decode,
    encode,
    encode_batches,
    message_key,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings.kafka, settings.topics)
    return settings


async def test_topics_are_created_with_configured_partitions_and_cleanup(
    settings: Settings,
) -> None:
    states = await ensure_topics(settings.kafka, settings.topics)
    by_name = {state.name: state for state in states}
    assert set(by_name) == {spec.name for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        state = by_name[spec.name]
        assert state.partitions == settings.topics.partitions_for(spec) == 3
        for config, value in spec.configs().items():
            assert state.configs[config] == value, (spec.name, config)


async def test_creating_topics_again_changes_nothing(topics: Settings) -> None:
    again = await ensure_topics(topics.kafka, topics.topics)
    assert not any(state.created for state in again)
    described = await describe_topics(topics.kafka, [spec.name for spec in ALL_TOPICS])
    assert [(s.name, s.partitions) for s in described] == [(s.name, s.partitions) for s in again]


async def _produce(settings: Settings, topic: str, values: list[tuple[bytes | None, bytes]]):  # type: ignore[no-untyped-def]
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        return [await (await producer.send(topic, value, key=key)) for key, value in values]
    finally:
        await producer.stop()


async def _fetch(settings: Settings, topic: str, metadata: list) -> list:  # type: ignore[type-arg]
    """The messages at exactly the offsets the producer was told, in order."""
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        wanted = {(m.partition, m.offset) for m in metadata}
        partitions = sorted({m.partition for m in metadata})
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        for p in partitions:
            consumer.seek(
                TopicPartition(topic, p), min(m.offset for m in metadata if m.partition == p)
            )
        found = {}
        while len(found) < len(wanted):
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "timed out reading back what was produced"
            for messages in batch.values():
                for message in messages:
                    if (message.partition, message.offset) in wanted:
                        found[(message.partition, message.offset)] = message
        return [found[(m.partition, m.offset)] for m in metadata]
    finally:
        await consumer.stop()


async def test_every_topic_record_round_trips_through_the_broker(
    topics: Settings, samples: list[Record]
) -> None:
    for spec in ALL_TOPICS:
        record = next(r for r in samples if type(r) is spec.record)
        metadata = await _produce(topics, spec.name, [(message_key(record), encode(record))])
        (message,) = await _fetch(topics, spec.name, metadata)
        assert decode(spec, message.value) == record, spec.name
        assert message.key == message_key(record)


async def test_the_same_key_always_lands_on_the_same_partition(topics: Settings) -> None:
    values = [(b"node-%d" % (i % 4), b"{}") for i in range(40)]
    metadata = await _produce(topics, DNS.name, values)
    partition_of: dict[bytes | None, set[int]] = {}
    for (key, _), meta in zip(values, metadata, strict=True):
        partition_of.setdefault(key, set()).add(meta.partition)
    assert all(len(partitions) == 1 for partitions in partition_of.values())


async def test_split_batches_arrive_whole_and_in_order(topics: Settings) -> None:
    answers = [
        DnsAnswer(
            cluster="test",
            node="node-b",
            ts=float(i),
            client_ip="10.1.0.5",
            server_ip="10.96.0.10",
            transport="tcp",
            qname=f"svc-{i}.shop.svc.cluster.local",
            qtype="AAAA",
            answers=(f"fd00::{i:x}",),
            ttl=5,
        )
        for i in range(3000)
    ]
    batches = list(
        encode_batches(
            DnsAnswerBatch, cluster="test", node="node-b", records=answers, max_bytes=100_000
        )
    )
    assert len(batches) > 1
    assert sum(batch.records for batch in batches) == len(answers)
    metadata = await _produce(topics, DNS.name, [(b"node-b", batch.value) for batch in batches])
    messages = await _fetch(topics, DNS.name, metadata)
    received = [r for m in messages for r in decode(DNS, m.value).records]  # type: ignore[attr-defined]
    assert received == answers


async def test_malformed_messages_raise_a_clear_error_and_the_good_ones_still_decode(
    topics: Settings, samples: list[Record]
) -> None:
    good = next(r for r in samples if isinstance(r, DnsAnswerBatch))
    values = [
        (b"node-a", b"\x00\x01garbage"),
        (b"node-a", b'{"v":1,"cluster":"test","node":"node-a","records":[{"cluster":5}]}'),
        (b"node-a", b'{"v":7,"cluster":"test","node":"node-a","records":[]}'),
        (b"node-a", encode(good)),
    ]
    messages = await _fetch(topics, DNS.name, await _produce(topics, DNS.name, values))
    outcomes: list[object] = []
    for message in messages:
        try:
            outcomes.append(decode(DNS, message.value))
        except WireDecodeError as error:
            outcomes.append((error.topic, error.field))
    assert outcomes == [
        ("callmap.dns.v1", None),
        ("callmap.dns.v1", "records[0].cluster"),
        ("callmap.dns.v1", "v"),
        good,
    ]


async def test_reading_a_topic_to_its_end_ends_where_the_last_offset_is_no_message(
    topics: Settings,
) -> None:
    """A transaction's commit marker takes the last offset of each partition it wrote: the
    end offset is never a message, as after compaction, and reading must still end."""
    topic = f"read-to-end-{uuid.uuid4().hex[:8]}"
    async with admin_client(topics.kafka) as admin:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    producer = AIOKafkaProducer(
        **topics.kafka.client_kwargs(), transactional_id=f"test-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(20):  # partitions 0 and 1 only; partition 2 stays empty
                await producer.send(topic, b"%d" % i, key=b"k%d" % i, partition=i % 2)
    finally:
        await producer.stop()

    consumer = make_consumer(topics.kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        ends = await consumer.end_offsets(partitions)
        assert ends[partitions[0]] == 11  # ten messages and the commit marker
        async with asyncio.timeout(30):  # a reader waiting for the marker's offset never ends
            read = [message.value async for message in read_to_end(consumer, partitions)]
    finally:
        await consumer.stop()
    assert sorted(read) == sorted(b"%d" % i for i in range(20))
