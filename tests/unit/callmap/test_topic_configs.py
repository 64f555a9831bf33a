"""Topic configs read from DescribeConfigs answers: a topic a broker has not heard of yet
is no topic without configs."""

from __future__ import annotations

import pytest

from callmap.broker import topic_configs
from callmap.errors import PermanentError


def resource(name: str, error_code: int = 0, **configs: str | None) -> dict[str, object]:
    """One resource of a DescribeConfigs response, as aiokafka's ``to_object`` gives it."""
    return {
        "error_code": error_code,
        "error_message": "This server does not host this topic-partition." if error_code else None,
        "resource_type": 2,
        "resource_name": name,
        "config_entries": [
            {"config_names": key.replace("_", "."), "config_value": value}
            for key, value in configs.items()
        ],
    }


def test_each_topic_gets_its_configs_without_unset_ones() -> None:
    found = topic_configs(
        [
            resource("callmap.edges.v1", cleanup_policy="compact", min_insync_replicas="2"),
            resource("callmap.dns.v1", retention_ms="3600000", segment_bytes=None),
        ]
    )
    assert found == {
        "callmap.edges.v1": {"cleanup.policy": "compact", "min.insync.replicas": "2"},
        "callmap.dns.v1": {"retention.ms": "3600000"},
    }


def test_a_topic_the_broker_does_not_know_yet_is_an_error_not_empty_configs() -> None:
    with pytest.raises(PermanentError, match=r"topic callmap\.edges\.v1 is not known"):
        topic_configs([resource("callmap.dns.v1"), resource("callmap.edges.v1", error_code=3)])


def test_configs_a_reader_may_not_describe_are_left_empty() -> None:
    denied = resource("callmap.edges.v1", error_code=29)  # TOPIC_AUTHORIZATION_FAILED
    assert topic_configs([denied]) == {"callmap.edges.v1": {}}
