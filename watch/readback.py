"""What the identity topics hold now: read back when a watcher starts to lead.

A new leader does not know what its predecessor published. Reading the
compacted topics from the start up to their current end gives the latest
record (or tombstone) of every key, which the tables adopt: unchanged objects
are then not published again, objects that vanished while no watcher ran get
their deletion records from the first reconcile, and deleted records still in
their retention get their tombstones on time. Records of other clusters (a
shared broker) are skipped; messages that do not decode are counted and
skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from callmap.broker import describe_topics, make_consumer, map_kafka_errors
from callmap.config import KafkaSettings
from callmap.counters import StageCounters
from callmap.errors import TemporaryError, WireDecodeError
from callmap.wire import IDENTITY_TOPICS, TopicSpec, decode, topic_by_name
from callmap.wire.topics import split_identity_key
from watch.identitytable import Identity

log = logging.getLogger(__name__)

Adopt = Callable[[TopicSpec, str, Identity | None], None]


async def read_back(
    kafka: KafkaSettings,
    cluster: str,
    adopt: Adopt,
    counters: StageCounters,
    *,
    topics: Iterable[TopicSpec] = IDENTITY_TOPICS,
    timeout: float = 120.0,
) -> int:
    """Hand every key's latest state on ``topics`` to ``adopt``; how many messages were read."""
    specs = list(topics)
    consumer = make_consumer(kafka, enable_auto_commit=False)
    try:
        with map_kafka_errors("read back the identity topics"):
            async with asyncio.timeout(timeout):
                described = await describe_topics(kafka, [spec.name for spec in specs])
                partitions = [
                    TopicPartition(state.name, partition)
                    for state in described
                    for partition in range(state.partitions)
                ]
                await consumer.start()
                return await _read(consumer, partitions, cluster, adopt, counters)
    except TimeoutError:
        raise TemporaryError(f"reading back the identity topics took over {timeout:g}s") from None
    finally:
        try:
            await consumer.stop()
        except KafkaError as exc:
            log.debug("closing the read-back consumer: %s", exc)


async def _read(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    cluster: str,
    adopt: Adopt,
    counters: StageCounters,
) -> int:
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    left = {tp for tp in partitions if ends[tp] > 0}
    for tp in left:
        if await consumer.position(tp) >= ends[tp]:
            left.discard(tp)
    read = 0
    while left:
        batches = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
        for tp, messages in batches.items():
            spec = topic_by_name(tp.topic)
            for message in messages:
                if message.offset >= ends[tp]:
                    break
                read += 1
                _adopt_one(spec, message.key, message.value, cluster, adopt, counters)
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
    log.info("read back %d identity messages of cluster %s", read, cluster)
    return read


def _adopt_one(
    spec: TopicSpec,
    raw_key: bytes | None,
    value: bytes | None,
    cluster: str,
    adopt: Adopt,
    counters: StageCounters,
) -> None:
    counters.seen += 1
    if raw_key is None:
        counters.drop("no_key")
        return
    key_cluster, key = split_identity_key(spec, raw_key)
    if key_cluster is not None and key_cluster != cluster:
        counters.drop("other_cluster")
        return
    if value is None:
        adopt(spec, key, None)
        return
    try:
        record = decode(spec, value)
    except WireDecodeError as exc:
        counters.drop("undecodable")
        log.warning("skipping an identity message (key %r): %s", key, exc)
        return
    if getattr(record, "cluster", None) != cluster:
        counters.drop("other_cluster")
        return
    assert isinstance(record, Identity)
    counters.emitted += 1
    adopt(spec, key, record)
