"""Which cluster a topic at the hub belongs to."""

from __future__ import annotations

import pytest

from aggregate.sources import mirrored_name, source_topic
from callmap.wire import CLUSTERS, EDGES, PODS


def test_a_mirrored_topic_belongs_to_its_alias_whatever_its_records_say() -> None:
    topic = source_topic("east.callmap.edges.v1")
    assert topic is not None and topic.spec is EDGES and topic.alias == "east"
    assert topic.cluster_of("default") == "east"
    assert mirrored_name("east", EDGES) == "east.callmap.edges.v1"


def test_a_shared_topic_belongs_to_each_records_cluster() -> None:
    topic = source_topic("callmap.pods.v1")
    assert topic is not None and topic.spec is PODS and topic.alias is None
    assert topic.cluster_of("west") == "west"
    heartbeat = source_topic("west.callmap.clusters.v1")
    assert heartbeat is not None and heartbeat.spec is CLUSTERS


@pytest.mark.parametrize(
    "name",
    [
        "callmap.dns.v1",
        "east.callmap.sockets.v1",
        "callmap.global-edges.v1",
        "east.west.callmap.edges.v1",  # mirrored twice: not a cluster's own topic
        "heartbeats",
        "east.checkpoints.internal",
        "mm2-offset-syncs.hub.internal",
        "callmap.edges.v2",
        "xcallmap.edges.v1",
    ],
)
def test_other_topics_are_not_read(name: str) -> None:
    assert source_topic(name) is None
