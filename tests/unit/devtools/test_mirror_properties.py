"""MirrorMaker 2's configuration: each source cluster's shared topics to the hub.

Setting names and meanings are Apache Kafka's (connect/mirror/README.md and
the MirrorMaker section of the Kafka documentation), written out here by hand.
"""

from __future__ import annotations

import re

import pytest

from devtools.mirrorconfig import mirror_flows, mirror_properties

SOURCES = {"east": "127.0.0.1:9101", "west": "127.0.0.1:9102"}
HUB = ("hub", "127.0.0.1:9100")


def properties(text: str) -> dict[str, str]:
    pairs = [line.split(" = ", 1) for line in text.splitlines()]
    assert len({key for key, _ in pairs}) == len(pairs), "a setting is written twice"
    return dict(pairs)


def test_each_source_flows_to_the_hub_with_the_shared_topics_only() -> None:
    config = properties(mirror_properties(SOURCES, HUB))
    assert config["clusters"] == "east, west, hub"
    assert config["east.bootstrap.servers"] == "127.0.0.1:9101"
    assert config["west.bootstrap.servers"] == "127.0.0.1:9102"
    assert config["hub.bootstrap.servers"] == "127.0.0.1:9100"
    assert config["east->hub.enabled"] == config["west->hub.enabled"] == "true"
    assert "hub->east.enabled" not in config  # MirrorMaker's default: off
    assert "east->west.enabled" not in config
    pattern = re.compile(config["east->hub.topics"])
    assert config["west->hub.topics"] == config["east->hub.topics"]
    for topic in ("callmap.edges.v1", "callmap.pods.v1", "callmap.services.v1",
                  "callmap.nodes.v1", "callmap.clusters.v1"):  # fmt: skip
        assert pattern.fullmatch(topic)
    for topic in ("callmap.dns.v1", "callmap.sockets.v1", "callmap-streams.sightings.v1",
                  "callmap.global-edges.v1", "callmapXedges.v1"):  # fmt: skip
        assert not pattern.fullmatch(topic)
    assert not pattern.fullmatch("east.callmap.edges.v1")  # a hub's copy is not copied again
    assert "replication.policy.class" not in config  # the default policy: <alias>.<topic>


def test_single_broker_settings_topic_configs_and_quick_refresh() -> None:
    config = properties(mirror_properties(SOURCES, HUB))
    for name in ("replication.factor", "offset.storage.replication.factor",
                 "status.storage.replication.factor", "config.storage.replication.factor",
                 "heartbeats.topic.replication.factor", "checkpoints.topic.replication.factor",
                 "offset-syncs.topic.replication.factor"):  # fmt: skip
        assert config[name] == "1", name
    assert config["sync.topic.configs.enabled"] == "true"  # compaction reaches the hub
    assert int(config["refresh.topics.interval.seconds"]) <= 5
    assert int(config["refresh.groups.interval.seconds"]) <= 5
    assert config["emit.checkpoints.enabled"] == "false"  # nobody commits offsets at the hub


def test_exactly_once_is_transactional_writes_to_the_hub_with_the_internal_rest_server() -> None:
    config = properties(mirror_properties(SOURCES, HUB, exactly_once=True, rest_port=8765))
    assert config["hub.exactly.once.source.support"] == "enabled"
    assert config["dedicated.mode.enable.internal.rest"] == "true"
    assert config["listeners"] == "http://127.0.0.1:8765"
    assert config["east.consumer.isolation.level"] == "read_committed"
    assert config["west.consumer.isolation.level"] == "read_committed"
    at_least_once = properties(mirror_properties(SOURCES, HUB))
    assert not {"listeners", "hub.exactly.once.source.support"} & at_least_once.keys()
    with pytest.raises(ValueError, match="port"):
        mirror_properties(SOURCES, HUB, exactly_once=True)


@pytest.mark.parametrize(
    ("sources", "hub"),
    [
        ({"hub": "127.0.0.1:9101"}, HUB),  # the hub cannot also be a source
        ({}, HUB),
        ({"us.east": "127.0.0.1:9101"}, HUB),  # a dot would break <alias>.<topic>
        ({"east": "127.0.0.1:9101"}, ("hub->x", "127.0.0.1:9100")),
        ({"": "127.0.0.1:9101"}, HUB),
        ({"east west": "127.0.0.1:9101"}, HUB),
    ],
)
def test_bad_aliases_are_refused(sources: dict[str, str], hub: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        mirror_properties(sources, hub)


def test_the_flows_read_back_from_a_properties_file() -> None:
    assert mirror_flows(mirror_properties(SOURCES, HUB)) == [("east", "hub"), ("west", "hub")]
    written_by_hand = "clusters=a, b\na->b.enabled=true\nb->a.enabled = false\na->b.topics = x\n"
    assert mirror_flows(written_by_hand) == [("a", "b")]
    assert mirror_flows("") == []
