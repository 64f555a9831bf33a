"""The topics of the wire contract and their settings."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from callmap.config import TopicSettings
from callmap.wire import (
    ALL_TOPICS,
    CLUSTERS,
    DLQ,
    DNS,
    EDGES,
    GLOBAL_EDGES,
    IDENTITY_TOPICS,
    NODES,
    PENDING,
    PODS,
    SERVICES,
    SIGHTINGS,
    SOCKETS,
    STATS,
    ClusterInfo,
    DnsAnswerBatch,
    Edge,
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    SocketBatch,
    topic_by_name,
)
from callmap.wire.topics import HUB_TOPICS, SHARED_TOPICS, identity_key, kafka_partition


def test_topic_names_are_the_contracts() -> None:
    assert [spec.name for spec in ALL_TOPICS] == [
        "callmap.dns.v1",
        "callmap.sockets.v1",
        "callmap.pods.v1",
        "callmap.services.v1",
        "callmap.nodes.v1",
        "callmap.clusters.v1",
        "callmap.edges.v1",
        "callmap.stats.v1",
        "callmap.dlq.v1",
        "callmap-streams.sightings.v1",
        "callmap-streams.pending.v1",
    ]


def test_each_topic_carries_one_record_type() -> None:
    assert DNS.record is DnsAnswerBatch and SOCKETS.record is SocketBatch
    assert (PODS.record, SERVICES.record, NODES.record) == (
        PodIdentity,
        ServiceIdentity,
        NodeIdentity,
    )
    assert EDGES.record is Edge
    assert len({spec.record for spec in ALL_TOPICS}) == len(ALL_TOPICS)
    assert CLUSTERS.record is ClusterInfo


def test_the_hub_topic_is_the_edges_of_every_cluster_and_no_clusters_own() -> None:
    assert [spec.name for spec in HUB_TOPICS] == ["callmap.global-edges.v1"]
    assert GLOBAL_EDGES.record is Edge and GLOBAL_EDGES.cleanup == "compact"
    assert GLOBAL_EDGES not in ALL_TOPICS
    assert topic_by_name("callmap.global-edges.v1") is GLOBAL_EDGES
    assert {spec.name for spec in SHARED_TOPICS} == {
        "callmap.edges.v1",
        "callmap.pods.v1",
        "callmap.services.v1",
        "callmap.nodes.v1",
        "callmap.clusters.v1",
    }


@pytest.mark.parametrize(
    "spec", [*IDENTITY_TOPICS, CLUSTERS, EDGES, GLOBAL_EDGES], ids=lambda s: s.name
)
def test_state_topics_are_compacted_and_never_expire_by_time(spec) -> None:  # type: ignore[no-untyped-def]
    configs = spec.configs()
    assert configs["cleanup.policy"] == "compact"
    assert "retention.ms" not in configs
    assert int(configs["delete.retention.ms"]) >= 3_600_000


@pytest.mark.parametrize(
    "spec", [DNS, SOCKETS, STATS, DLQ, SIGHTINGS, PENDING], ids=lambda s: s.name
)
def test_stream_topics_are_deleted_by_retention(spec) -> None:  # type: ignore[no-untyped-def]
    configs = spec.configs()
    assert configs["cleanup.policy"] == "delete"
    assert int(configs["retention.ms"]) > 0


def test_partitions_can_be_overridden_per_topic_or_for_all() -> None:
    settings = TopicSettings(partitions={"*": 3, "callmap.edges.v1": 24})
    assert settings.partitions_for(EDGES) == 24
    assert settings.partitions_for(DNS) == 3
    assert TopicSettings().partitions_for(DNS) == DNS.partitions


def test_topics_are_found_by_name_and_foreign_names_are_refused() -> None:
    assert topic_by_name("callmap.edges.v1") is EDGES
    with pytest.raises(KeyError):
        topic_by_name("callmap.edges.v0")


def test_a_clusters_heartbeat_is_keyed_by_its_alias_alone() -> None:
    assert identity_key(CLUSTERS, "east", "ignored") == b"east"
    assert identity_key(SERVICES, "east", "shop/api") == b"east/shop/api"
    assert identity_key(PODS, "east", "6d0c") == b"6d0c"


# Kafka's own murmur2 test vectors (Java ``UtilsTest.testMurmur2``), as signed ints.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), JAVA_MURMUR2.items())
def test_a_key_goes_where_the_java_client_would_put_it(key: bytes, signed: int) -> None:
    for partitions in (1, 3, 6, 12, 7):
        assert kafka_partition(key, partitions) == (signed & 0x7FFFFFFF) % partitions


def test_a_key_goes_where_aiokafkas_default_partitioner_would_put_it() -> None:
    rng = random.Random(7)
    for length in range(0, 80):  # every tail length, words and none
        for _ in range(20):
            key = rng.randbytes(length)
            for partitions in (1, 6, 12):
                ours = kafka_partition(key, partitions)
                assert ours == DefaultPartitioner()(key, list(range(partitions)), []), key
