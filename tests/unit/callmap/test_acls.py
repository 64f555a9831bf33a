"""Each component's ACLs: what it must do, and not a permission more (a real broker
checks them in tests/integration/callmap/test_kafka_security.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aggregate.worker import DEFAULT_GROUP
from callmap.acls import COMPONENTS, Acl, component_acls, kafka_acls_command
from callmap.cli import cli
from callmap.wire import DNS, EDGES, PODS


def writes(component: str) -> set[str]:
    return {
        a.name
        for a in component_acls(component)
        if a.resource == "TOPIC" and a.operation == "WRITE"
    }


def test_capture_writes_its_raw_topics_and_nothing_else() -> None:
    assert writes("capture") == {"callmap.dns.v1", "callmap.sockets.v1", "callmap.stats.v1"}
    assert {a.operation for a in component_acls("capture")} == {"WRITE", "DESCRIBE"}


def test_only_the_stream_app_writes_edges_and_only_the_watcher_identities() -> None:
    assert [c for c in COMPONENTS if EDGES.name in writes(c)] == ["streams"]
    assert [c for c in COMPONENTS if PODS.name in writes(c)] == ["watch"]


def test_the_stream_apps_own_resources_follow_its_app_id() -> None:
    acls = component_acls("streams", app_id="shop-pipeline")
    assert Acl("GROUP", "PREFIXED", "shop-pipeline", "READ") in acls
    assert Acl("TRANSACTIONAL_ID", "PREFIXED", "shop-pipeline-merge-", "WRITE") in acls
    assert Acl("TOPIC", "PREFIXED", "shop-pipeline", "WRITE") in acls
    assert Acl("TOPIC", "LITERAL", DNS.name, "WRITE") not in acls


def test_the_watchers_transactional_id_names_its_cluster() -> None:
    acls = component_acls("watch", cluster="east")
    assert Acl("TRANSACTIONAL_ID", "LITERAL", "callmap-watch-east", "WRITE") in acls


def test_an_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match="one of capture"):
        component_acls("router")


def test_the_kafka_acls_line_names_the_operation_resource_and_pattern() -> None:
    line = kafka_acls_command(Acl("TOPIC", "PREFIXED", "callmap.", "DESCRIBE_CONFIGS"), "User:w")
    assert line.endswith(
        "--allow-principal User:w --operation DescribeConfigs --topic callmap. "
        "--resource-pattern-type prefixed"
    )
    cluster = kafka_acls_command(Acl("CLUSTER", "LITERAL", "kafka-cluster", "DESCRIBE"), "User:w")
    assert "--operation Describe --cluster " in cluster


def test_topics_acls_prints_one_line_per_acl() -> None:
    result = CliRunner().invoke(cli, ["topics", "acls", "sink", "--principal", "User:s1"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(component_acls("sink"))
    assert all("--allow-principal User:s1" in line for line in lines)


def test_an_aggregator_reads_the_hub_and_its_clusters_copies_and_writes_global_edges() -> None:
    acls = component_acls("aggregate", aliases=("east",))
    reads = {a.name for a in acls if a.resource == "TOPIC" and a.operation == "READ"}
    assert {"east.callmap.edges.v1", "east.callmap.pods.v1", EDGES.name} <= reads
    assert not any(name.startswith("west.") for name in reads)
    assert writes("aggregate") == {"callmap.global-edges.v1"}
    assert Acl("GROUP", "LITERAL", DEFAULT_GROUP, "READ") in acls  # its default group


def test_the_map_readers_read_the_map_and_identities_and_write_nothing() -> None:
    acls = component_acls("map", aliases=["east"])
    assert {a.operation for a in acls} == {"READ", "DESCRIBE"}
    assert {a.resource for a in acls} == {"TOPIC"}  # no consumer group: they commit nothing
    read = {a.name for a in acls if a.operation == "READ"}
    assert {EDGES.name, "callmap.global-edges.v1", PODS.name, "east.callmap.pods.v1"} <= read
    assert DNS.name not in read and "east.callmap.edges.v1" not in read
