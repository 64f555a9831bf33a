"""MirrorMaker 2's configuration: each source cluster's shared topics to the hub."""

from __future__ import annotations

import re

import pytest

from devtools.mirror import mirror_properties


def properties(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines())


def test_each_source_flows_to_the_hub_with_the_shared_topics_only() -> None:
    config = properties(
        mirror_properties(
            {"east": "127.0.0.1:9101", "west": "127.0.0.1:9102"}, ("hub", "127.0.0.1:9100")
        )
    )
    assert config["clusters"] == "east, west, hub"
    assert config["east->hub.enabled"] == config["west->hub.enabled"] == "true"
    assert "hub->east.enabled" not in config  # MirrorMaker's default: off
    pattern = re.compile(config["east->hub.topics"])
    for topic in ("callmap.edges.v1", "callmap.pods.v1", "callmap.services.v1",
                  "callmap.nodes.v1", "callmap.clusters.v1"):  # fmt: skip
        assert pattern.fullmatch(topic)
    for topic in ("callmap.dns.v1", "callmap.sockets.v1", "callmap-streams.sightings.v1"):
        assert not pattern.fullmatch(topic)
    assert config["sync.topic.configs.enabled"] == "true"  # compaction reaches the hub
    assert "replication.policy.class" not in config  # the default policy: <alias>.<topic>


def test_the_hub_cannot_also_be_a_source() -> None:
    with pytest.raises(ValueError):
        mirror_properties({"hub": "127.0.0.1:9101"}, ("hub", "127.0.0.1:9100"))
