"""The Kafka adapter every callmap process shares: clients, topics, errors.

aiokafka's exceptions stop here: callers see :class:`TemporaryError` for faults
that may pass (unreachable broker, timeouts) and :class:`PermanentError` for
those that will not (authentication, authorisation, bad requests).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import cramjam
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from callmap.config import KafkaSettings, TopicSettings
from callmap.errors import PermanentError, TemporaryError
from callmap.wire.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

_TEMPORARY = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable, RequestTimedOutError)
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
_UNKNOWN_TOPIC_OR_PARTITION = UnknownTopicOrPartitionError.errno


@contextmanager
def map_kafka_errors(action: str) -> Iterator[None]:
    """Translate aiokafka exceptions raised while doing ``action``."""
    try:
        yield
    except _TEMPORARY as exc:
        raise TemporaryError(f"{action}: Kafka unreachable or slow: {exc}") from exc
    except KafkaError as exc:
        raise PermanentError(f"{action}: {exc}") from exc


@asynccontextmanager
async def admin_client(kafka: KafkaSettings, timeout_ms: int = 15_000) -> AsyncIterator[Any]:
    client = AIOKafkaAdminClient(request_timeout_ms=timeout_ms, **kafka.client_kwargs())
    with map_kafka_errors("connect to Kafka"):
        await client.start()
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker has it."""

    name: str
    partitions: int
    configs: dict[str, str]
    created: bool = False
    replication: int = 1
    """Replicas of its first partition."""


async def ensure_topics(
    kafka: KafkaSettings,
    topics: TopicSettings,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
) -> list[TopicState]:
    """Create every topic of ``specs`` that does not exist yet; describe them all.

    Existing topics are left as they are: changing partitions or configs of a
    live topic is an operator's decision, not a side effect of starting up.
    """
    specs = list(specs)
    async with admin_client(kafka) as admin:
        with map_kafka_errors("create topics"):
            existing = set(await admin.list_topics())
            missing = [spec for spec in specs if spec.name not in existing]
            if missing:
                replication = topics.replication or await _default_replication(admin)
                response = await admin.create_topics(
                    [_new_topic(spec, topics, replication) for spec in missing]
                )
                _raise_for_topic_errors(response)
                log.info("created topics %s", ", ".join(spec.name for spec in missing))
            states = await _describe_when_created(admin, [spec.name for spec in specs])
    created = {spec.name for spec in missing}
    return [replace(s, created=s.name in created) for s in states]


async def ensure_topic(
    kafka: KafkaSettings, name: str, partitions: int, replication: int, configs: dict[str, str]
) -> TopicState:
    """Create one topic outside the wire contract (a service's internal topic) unless it
    exists; describe it. Durability configs follow ``replication``."""
    async with admin_client(kafka) as admin:
        with map_kafka_errors(f"create topic {name}"):
            if name not in set(await admin.list_topics()):
                topic = NewTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=replication,
                    topic_configs={**configs, **durability_configs(replication)},
                )
                _raise_for_topic_errors(await admin.create_topics([topic]))
                log.info("created topic %s", name)
            (state,) = await _describe_when_created(admin, [name])
    return state


async def describe_topics(kafka: KafkaSettings, names: Iterable[str]) -> list[TopicState]:
    """Partition count and topic-level configs of each named topic."""
    async with admin_client(kafka) as admin:
        with map_kafka_errors("describe topics"):
            return await _describe(admin, list(names))


async def _default_replication(admin: Any) -> int:
    """Three replicas where the cluster has three brokers, else as many as it has."""
    cluster = await admin.describe_cluster()
    return max(1, min(3, len(cluster.get("brokers", []))))


async def _describe_when_created(
    admin: Any, names: list[str], wait: float = 15.0
) -> list[TopicState]:
    """Describe topics just created: metadata reaches the broker a moment later."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return await _describe(admin, names)
        except PermanentError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.2)


def _new_topic(spec: TopicSpec, topics: TopicSettings, replication: int) -> NewTopic:
    return NewTopic(
        name=spec.name,
        num_partitions=topics.partitions_for(spec),
        replication_factor=replication,
        topic_configs={**spec.configs(), **durability_configs(replication)},
    )


def durability_configs(replication: int) -> dict[str, str]:
    """With three replicas or more, a write needs two of them (with ``acks=all``): one
    broker may be down, and no acknowledged record lives on one disk only."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}


def _raise_for_topic_errors(response: Any) -> None:
    for entry in response.to_object().get("topic_errors", []):
        code = entry.get("error_code", 0)
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = entry.get("error_message") or f"error code {code}"
            raise PermanentError(f"cannot create topic {entry.get('topic')}: {message}")


def topic_configs(resources: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Each topic's configs from the resources of DescribeConfigs responses.

    A broker that has not yet heard of a topic just created answers for it with
    ``UNKNOWN_TOPIC_OR_PARTITION`` and no configs; that is :class:`PermanentError`
    here, as a topic missing from the metadata is, so that
    :func:`_describe_when_created` waits for it instead of reporting the topic
    without its configs. Any other error (a reader not allowed to describe
    configs) leaves the topic's configs empty, as they always were.
    """
    configs: dict[str, dict[str, str]] = {}
    for resource in resources:
        name = resource["resource_name"]
        if resource.get("error_code", 0) == _UNKNOWN_TOPIC_OR_PARTITION:
            raise PermanentError(f"topic {name} is not known to every broker yet")
        configs[name] = {
            entry["config_names"]: entry["config_value"]
            for entry in resource["config_entries"]
            if entry["config_value"] is not None
        }
    return configs


async def _describe(admin: Any, names: list[str]) -> list[TopicState]:
    metadata = {t["topic"]: t for t in await admin.describe_topics(names)}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs = topic_configs(
        resource for response in responses for resource in response.to_object()["resources"]
    )
    states = []
    for name in names:
        topic = metadata.get(name)
        if topic is None or topic.get("error_code", 0) != 0:
            raise PermanentError(f"topic {name} does not exist")
        partitions = topic["partitions"]
        replicas = len(partitions[0]["replicas"]) if partitions else 0
        states.append(
            TopicState(name, len(partitions), configs.get(name, {}), replication=replicas)
        )
    return states


async def topic_partitions(kafka: KafkaSettings, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics ``names`` (PermanentError if one is missing)."""
    states = await describe_topics(kafka, names)
    return [TopicPartition(s.name, p) for s in states for p in range(s.partitions)]


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with callmap's delivery defaults: idempotent, acks from all replicas.
    With ``compression_type="lz4"`` its batches are compressed in LZ4's fast mode
    (:func:`compress_lz4_fast`)."""
    options: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}
    options.update(overrides)
    if options.get("compression_type") == "lz4":
        use_fast_lz4()
    return AIOKafkaProducer(**{**kafka.client_kwargs(), **options})


def compress_lz4_fast(payload: bytes | bytearray | memoryview, level: int = 0) -> bytes:
    """A Kafka LZ4 frame (independent blocks, no content checksum) in LZ4's fast mode,
    whatever ``level`` aiokafka asks for.

    Kafka's Java producer compresses LZ4 in the fast mode unless a level is set
    (``compression.lz4.level``), and librdkafka does too; aiokafka 0.11 to 0.14 ask
    cramjam for LZ4HC at level 9 and take no setting (aio-libs/aiokafka#1028, still
    open). On the capture agent's batches of DNS answers that is seven times the CPU
    for batches a tenth smaller (677 kB of JSON: 8.7 ms and 88 kB against 1.2 ms and
    97 kB)."""
    del level  # aiokafka's; the fast mode has none worth choosing
    compressor = cramjam.lz4.Compressor(level=0, content_checksum=False, block_linked=False)
    compressor.compress(payload)
    return bytes(compressor.finish())


_LZ4_USERS = (
    "aiokafka.codec",
    "aiokafka.record.default_records",
    "aiokafka.record.legacy_records",
    "aiokafka.record._crecords.default_records",
    "aiokafka.record._crecords.legacy_records",
)
"""The modules that took aiokafka's ``lz4_encode`` by name when they were imported."""


@functools.cache
def use_fast_lz4() -> None:
    """Give every aiokafka module that compresses batches :func:`compress_lz4_fast`
    (the record builders look their ``lz4_encode`` up at each batch). Producers that
    callmap does not make itself (Faust's) need it called before they compress."""
    for name in _LZ4_USERS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an aiokafka installed without its compiled records
            continue
        module.lz4_encode = compress_lz4_fast  # type: ignore[attr-defined]


def make_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` that reads committed records only; pass ``group_id``
    for a committed consumer group."""
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        # The stream app announces edges in transactions: never read an aborted one.
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **{**kafka.client_kwargs(), **options})


async def start_producer(
    kafka: KafkaSettings, timeout: float, **overrides: Any
) -> AIOKafkaProducer:
    """A started producer (:func:`make_producer`); one that fails to start in ``timeout``
    seconds is stopped again, so its connections do not leak, and the error raised."""
    producer = make_producer(kafka, **overrides)
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def stop_quietly(
    client: AIOKafkaProducer | AIOKafkaConsumer | None, what: str, timeout: float = 5.0
) -> None:
    """Stop a client that is being dropped anyway: a failure to close is logged, not raised."""
    if client is None:
        return
    try:
        async with asyncio.timeout(timeout):
            await client.stop()
    except (KafkaError, TimeoutError, OSError) as exc:
        log.debug("closing %s: %s", what, exc)


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, max_records: int = 10_000
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every message of ``partitions`` from the beginning to their end offsets at call time.

    The way to read a compacted topic whole: the consumer is assigned the
    partitions and sought to their beginning, and each partition is done when
    the consumer's position reaches the end offset it had when reading began
    (compaction leaves gaps, so the last offset itself may never arrive).
    Messages published after that point are not yielded.
    """
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    left = {tp for tp in partitions if ends[tp] > 0}
    while left:
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
        if not left:
            return
        batch = await consumer.getmany(*left, timeout_ms=500, max_records=max_records)
        for tp, messages in batch.items():
            for message in messages:
                if message.offset >= ends[tp]:
                    break
                yield message
