"""The hub's identity view: one store per cluster, heartbeats, and what a cluster is called."""

from __future__ import annotations

import pytest
from helpers.clustersets import pod

from aggregate.identities import Identities
from aggregate.sources import source_topic
from callmap.counters import Counters
from callmap.errors import WireDecodeError
from callmap.wire import ClusterInfo, encode, message_key


def apply(identities: Identities, topic: str, record: object, now: float = 0.0) -> None:
    source = source_topic(topic)
    assert source is not None
    identities.apply(source, message_key(record), encode(record), now)  # type: ignore[arg-type]


def test_a_mirrored_topic_fills_its_aliases_store_whatever_the_records_say() -> None:
    identities = Identities(Counters())
    apply(identities, "east.callmap.pods.v1", pod("default", "web-1", "10.0.0.5", "web"))
    apply(identities, "west.callmap.pods.v1", pod("default", "api-1", "10.0.0.5", "api"))
    assert sorted(identities.stores) == ["east", "west"]  # same address, two clusters
    assert identities.stores["east"].holder("10.0.0.5", 1.0) is not None


def test_shared_topics_go_by_each_records_cluster_and_pod_tombstones_find_theirs() -> None:
    identities = Identities(Counters())
    record = pod("west", "api-1", "10.1.0.7", "api")
    apply(identities, "callmap.pods.v1", record)
    assert identities.stores["west"].holder("10.1.0.7", 1.0) is not None
    source = source_topic("callmap.pods.v1")
    assert source is not None
    identities.apply(source, record.uid.encode(), None, 2.0)
    assert identities.stores["west"].holder("10.1.0.7", 1.0) is None


def test_heartbeats_tell_a_stopped_cluster_from_a_quiet_one() -> None:
    identities = Identities(Counters())
    beat = ClusterInfo(cluster="east", uid="u-1", ts=0.0, heartbeat=30.0)
    apply(identities, "east.callmap.clusters.v1", beat, now=100.0)
    assert identities.health.stale(now=189.0) == []
    assert identities.health.stale(now=191.0) == ["east"]
    apply(identities, "east.callmap.clusters.v1", beat, now=190.0)
    assert identities.health.stale(now=191.0) == []


def test_one_cluster_id_under_two_aliases_is_counted() -> None:
    counters = Counters()
    identities = Identities(counters)
    beat = ClusterInfo(cluster="east", uid="u-1", ts=0.0)
    apply(identities, "east.callmap.clusters.v1", beat)
    apply(identities, "east2.callmap.clusters.v1", beat)
    assert identities.health.conflicts() == {"u-1": ["east", "east2"]}
    assert counters.stage("clusters").dropped["cluster_uid_under_two_aliases"] == 1


def test_garbage_raises_the_one_decode_error_for_the_adapter_to_count() -> None:
    identities = Identities(Counters())
    source = source_topic("east.callmap.services.v1")
    assert source is not None
    with pytest.raises(WireDecodeError):
        identities.apply(source, b"east/shop/api", b"\xff{not json", 0.0)


def test_a_cluster_that_never_sent_a_heartbeat_is_not_judged() -> None:
    identities = Identities(Counters())
    apply(identities, "east.callmap.pods.v1", pod("east", "web-1", "10.0.0.5", "web"), now=0.0)
    assert identities.health.stale(now=10_000.0) == []
    assert identities.health.clusters["east"].records_at == 0.0
