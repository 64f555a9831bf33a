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

from callmap.broker import (
    make_consumer,
    map_kafka_errors,
    read_to_end,
    stop_quietly,
    topic_partitions,
)
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
                partitions = await topic_partitions(kafka, [spec.name for spec in specs])
                await consumer.start()
                return await _read(consumer, partitions, cluster, adopt, counters)
    except TimeoutError:
        raise TemporaryError(f"reading back the identity topics took over {timeout:g}s") from None
    finally:
        await stop_quietly(consumer, "the read-back consumer")


async def _read(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    cluster: str,
    adopt: Adopt,
    counters: StageCounters,
) -> int:
    read = 0
    async for message in read_to_end(consumer, partitions):
        read += 1
        _adopt_one(
            topic_by_name(message.topic), message.key, message.value, cluster, adopt, counters
        )
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
