"""Every Kafka topic callmap uses: name, record type, key, and settings.

Nothing else in callmap spells a topic name. Raw capture topics carry per-node
batches and are deleted by retention; identity and edge topics are compacted
and keyed by the object, so reading one from the start yields current state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Literal

from callmap.wire.records import (
    CaptureStats,
    ClusterInfo,
    DeadLetter,
    DnsAnswerBatch,
    Edge,
    NodeIdentity,
    PendingBatch,
    PodIdentity,
    Record,
    ServiceIdentity,
    SightingBatch,
    SocketBatch,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# A raw batch message stays below this many encoded bytes, so that it fits the
# broker's default message.max.bytes (1 MiB) with room for headers.
MAX_BATCH_BYTES = 900_000

Cleanup = Literal["delete", "compact"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic and how it is created."""

    name: str
    """The topic name; the version suffix changes only with the record's schema."""
    record: type[Record]
    """The record type every message value decodes to."""
    key: str
    """What the message key is, in words (documented for outside consumers)."""
    partitions: int
    """Default partition count; deployments override it per topic."""
    cleanup: Cleanup
    """``compact`` for state topics (latest value per key), ``delete`` for streams."""
    retention_ms: int | None = None
    """How long a ``delete`` topic keeps messages; None means the broker default."""
    extra_configs: dict[str, str] = field(default_factory=dict)
    """Further topic configs set at creation."""

    def configs(self) -> dict[str, str]:
        """Topic-level configs to pass to CreateTopics."""
        configs: dict[str, str] = {"cleanup.policy": self.cleanup}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        configs.update(self.extra_configs)
        return configs


# Compacted topics clean often enough that a new subscriber does not replay a
# long history of superseded states, and keep tombstones for a day so that a
# consumer that was down for less than that still sees deletions.
_COMPACTION = {
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(HOUR_MS),
    "delete.retention.ms": str(DAY_MS),
}

DNS = TopicSpec(
    name="callmap.dns.v1",
    record=DnsAnswerBatch,
    key="node name",
    partitions=12,
    cleanup="delete",
    retention_ms=DAY_MS,
)
SOCKETS = TopicSpec(
    name="callmap.sockets.v1",
    record=SocketBatch,
    key="node name",
    partitions=12,
    cleanup="delete",
    retention_ms=DAY_MS,
)
PODS = TopicSpec(
    name="callmap.pods.v1",
    record=PodIdentity,
    key="pod UID (unique across clusters)",
    partitions=6,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
SERVICES = TopicSpec(
    name="callmap.services.v1",
    record=ServiceIdentity,
    key="cluster/namespace/name",
    partitions=6,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
NODES = TopicSpec(
    name="callmap.nodes.v1",
    record=NodeIdentity,
    key="cluster/node name",
    partitions=1,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
EDGES = TopicSpec(
    name="callmap.edges.v1",
    record=Edge,
    key="edge_id",
    partitions=12,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
CLUSTERS = TopicSpec(
    name="callmap.clusters.v1",
    record=ClusterInfo,
    key="cluster alias",
    partitions=1,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
# Written by ``callmap aggregate`` at a hub that reads many clusters' topics.
GLOBAL_EDGES = TopicSpec(
    name="callmap.global-edges.v1",
    record=Edge,
    key="global edge_id (both endpoints carry their cluster)",
    partitions=12,
    cleanup="compact",
    extra_configs=_COMPACTION,
)
STATS = TopicSpec(
    name="callmap.stats.v1",
    record=CaptureStats,
    key="node name",
    partitions=3,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
)
DLQ = TopicSpec(
    name="callmap.dlq.v1",
    record=DeadLetter,
    key="the original message's key",
    partitions=3,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
)

# Internal to the stream app: nobody else reads or writes them. Their names
# start with the app id, so two pipelines on one Kafka cluster do not mix.
DEFAULT_STREAMS_APP = "callmap-streams"
SIGHTINGS = TopicSpec(
    name=f"{DEFAULT_STREAMS_APP}.sightings.v1",
    record=SightingBatch,
    key="none: sent to the partition of its edges' ids (an empty value is a tick)",
    partitions=12,
    cleanup="delete",
    retention_ms=DAY_MS,
)
PENDING = TopicSpec(
    name=f"{DEFAULT_STREAMS_APP}.pending.v1",
    record=PendingBatch,
    key="node name",
    partitions=12,
    cleanup="delete",
    retention_ms=DAY_MS,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    DNS,
    SOCKETS,
    PODS,
    SERVICES,
    NODES,
    CLUSTERS,
    EDGES,
    STATS,
    DLQ,
    SIGHTINGS,
    PENDING,
)
IDENTITY_TOPICS: tuple[TopicSpec, ...] = (PODS, SERVICES, NODES)
# What a cluster's pipeline offers to an aggregator (mirrored to a hub by MirrorMaker 2).
SHARED_TOPICS: tuple[TopicSpec, ...] = (EDGES, PODS, SERVICES, NODES, CLUSTERS)
# Topics of the hub only: ``callmap aggregate`` creates them, a cluster never does.
HUB_TOPICS: tuple[TopicSpec, ...] = (GLOBAL_EDGES,)


def identity_key(spec: TopicSpec, cluster: str, local: str) -> bytes:
    """The message key of an identity: pod UIDs as they are, others under their cluster.

    ``local`` is the key within one cluster: a pod UID, ``namespace/name`` of a
    service, or a node name (ignored for the clusters topic, keyed by alias).
    Clusters share topics, so names are qualified.
    """
    if spec.name == PODS.name:
        return local.encode()
    if spec.name == CLUSTERS.name:  # one heartbeat per cluster: the alias is the key
        return cluster.encode()
    return f"{cluster}/{local}".encode()


def split_identity_key(spec: TopicSpec, key: bytes) -> tuple[str | None, str]:
    """(cluster, key within the cluster) of an identity message key.

    Pod keys carry no cluster (None): UIDs are unique everywhere.
    """
    text = key.decode(errors="replace")
    if spec.name == PODS.name:
        return None, text
    cluster, _, local = text.partition("/")
    return cluster, local


def owner_partition(edge_id: str, partitions: int) -> int:
    """The sightings partition, and so the worker, that owns the edge ``edge_id``.

    An ``edge_id`` is hex SHA-256 already: its first 32 bits are as uniform
    as murmur2 of it, at a fraction of the cost of pure-Python murmur2.
    """
    return int(edge_id[:8], 16) % partitions


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as in Java).

    A producer that names the partition itself must agree with every other
    writer of a compacted topic, or one key would live on two partitions.
    aiokafka's pure-Python murmur2 costs about 15 µs for an edge key; this one
    reads the key's words in one ``struct`` call and costs half of that.
    """
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def _murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (seed 0x9747b28c), as an unsigned 32-bit value."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[words * 4 :]
    if tail:
        h = ((h ^ int.from_bytes(tail, "little")) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def for_app(spec: TopicSpec, app_id: str) -> TopicSpec:
    """An internal topic of the stream app with id ``app_id``."""
    if not spec.name.startswith(DEFAULT_STREAMS_APP + "."):
        raise ValueError(f"{spec.name} is not a stream app topic")
    return replace(spec, name=app_id + spec.name[len(DEFAULT_STREAMS_APP) :])


def mirrored(spec: TopicSpec, alias: str) -> TopicSpec:
    """``spec``'s topic of cluster ``alias`` at a hub, as MirrorMaker 2's default
    replication policy names it: ``<alias>.<topic>``."""
    return replace(spec, name=f"{alias}.{spec.name}")


def topic_by_name(name: str) -> TopicSpec:
    """The spec of a topic by its name; KeyError for a topic callmap does not own."""
    for spec in (*ALL_TOPICS, *HUB_TOPICS):
        if spec.name == name:
            return spec
    raise KeyError(name)


def changelog_topic(app_id: str) -> str:
    """The edge states of the stream app with id ``app_id``: compacted, with as many
    partitions as its sightings topic (partition ``p`` holds the states of the edges
    that sightings partition ``p`` owns). Internal to the stream app, and named as
    Faust named its table's changelog when the states lived in one."""
    return f"{app_id}-edges-changelog"


def changelog_configs() -> dict[str, str]:
    """Topic-level configs of a changelog topic (:func:`changelog_topic`)."""
    return {"cleanup.policy": "compact", **_COMPACTION}
