"""The map commands reading the topics themselves: the compacted edges topic from
the start, and pod and service identities for policy labels and ports."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
import yaml
from click.testing import CliRunner
from helpers.sinkcorpus import load_jsonl
from helpers.sinkkafka import create_topics

from callmap.broker import make_producer
from callmap.wire import (
    EDGES,
    GLOBAL_EDGES,
    PODS,
    SERVICES,
    Edge,
    Endpoint,
    PodIdentity,
    Record,
    ServiceIdentity,
    encode,
    message_key,
)
from callmap.wire.topics import mirrored
from sinks.changes import Change
from sinks.maps.cli import export, list_command
from sinks.maps.readers import read_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


def edge(edge_id: str, event: str, last: float) -> Edge:
    return Edge(
        edge_id=edge_id,
        event=event,  # type: ignore[arg-type]
        cluster="test",
        client=Endpoint(type="workload", namespace="a", name="x", kind="Deployment"),
        server=Endpoint(type="external", dns_name=f"{edge_id}.example.org"),
        first_seen=1.0,
        last_seen=last,
    )


async def test_the_edges_topic_yields_the_current_graph(edges_topic) -> None:
    await edges_topic.produce(
        [
            edge("one", "new", 1),
            edge("one", "refresh", 2),
            edge("two", "new", 1),
            Change("two"),  # deleted
            edge("three", "new", 1),
            edge("three", "expired", 9),
            (b"bad", b"{"),
        ]
    )
    data = await read_kafka(
        edges_topic.settings.kafka, identities=False, edges_topic=edges_topic.spec
    )
    assert data.edges == [edge("one", "refresh", 2), edge("three", "expired", 9)]
    assert len(data.problems) == 1 and "not JSON" in data.problems[0]


async def test_export_from_kafka_takes_labels_from_pods_and_ports_from_services(
    settings, kafka_bootstrap, monkeypatch, corpus_edges, corpus_identities
) -> None:
    cluster = f"c-{uuid.uuid4().hex[:8]}"  # the shared topics hold other tests' records too
    pods, services = corpus_identities
    records: list[Record] = [
        msgspec.structs.replace(e, cluster=cluster, edge_id=f"{cluster}-{e.edge_id}")
        for e in corpus_edges
    ]
    records += [msgspec.structs.replace(p, cluster=cluster, uid=f"{cluster}-{p.uid}") for p in pods]
    records += [msgspec.structs.replace(s, cluster=cluster) for s in services]
    await create_topics(settings, [EDGES, PODS, SERVICES])
    topics = {Edge: EDGES, PodIdentity: PODS, ServiceIdentity: SERVICES}
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for record in records:
            topic = topics[type(record)].name
            await producer.send(topic, encode(record), key=message_key(record))
        await producer.flush()
    finally:
        await producer.stop()

    monkeypatch.setenv("CALLMAP_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["--cluster", cluster, "--format", "networkpolicy", "-n", "shop"]
    result = await asyncio.to_thread(CliRunner().invoke, export, args)
    assert result.exit_code == 0, result.output
    policies = {p["metadata"]["name"]: p for p in yaml.safe_load_all(result.stdout)}
    checkout = policies["callmap-checkoutservice-ingress"]["spec"]
    assert checkout["podSelector"] == {"matchLabels": {"app": "checkoutservice", "version": "v1"}}
    (rule,) = checkout["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "frontend", "tier": "web"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": "grpc"}]  # the service's target port

    listing = await asyncio.to_thread(CliRunner().invoke, list_command, ["--cluster", cluster])
    assert "checkoutservice in namespace shop calls:\n  - cartservice\n" in listing.output


def _renamed(edge: Edge, names: dict[str, str]) -> Edge:
    def side(endpoint: Endpoint) -> Endpoint:
        cluster = names.get(endpoint.cluster or "", endpoint.cluster)
        return msgspec.structs.replace(endpoint, cluster=cluster)

    return msgspec.structs.replace(
        edge,
        edge_id=f"{names['east']}-{edge.edge_id}",
        cluster=names[edge.cluster],
        client=side(edge.client),
        server=side(edge.server),
    )


async def test_export_of_one_cluster_from_the_hubs_global_edges(
    settings, kafka_bootstrap, monkeypatch
) -> None:
    tag = uuid.uuid4().hex[:8]  # the global topic may hold other tests' records too
    names = {"east": f"east{tag}", "west": f"west{tag}"}
    world = [_renamed(e, names) for e in load_jsonl("global-edges", Edge)]
    pods = load_jsonl("global-pods", PodIdentity)
    east_pods = [
        msgspec.structs.replace(p, cluster=names["east"], uid=f"{tag}-{p.uid}")
        for p in pods
        if p.cluster == "east"
    ]
    # west's pods came through MirrorMaker: their topic names the cluster, whatever they say
    west_pods = [
        msgspec.structs.replace(p, cluster="default", uid=f"{tag}-{p.uid}")
        for p in pods
        if p.cluster == "west"
    ]
    west_topic = mirrored(PODS, names["west"])
    await create_topics(settings, [GLOBAL_EDGES, PODS, SERVICES, west_topic])
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for record, topic in [
            *((e, GLOBAL_EDGES) for e in world),
            *((p, PODS) for p in east_pods),
            *((p, west_topic) for p in west_pods),
        ]:
            await producer.send(topic.name, encode(record), key=message_key(record))
        await producer.flush()
    finally:
        await producer.stop()

    monkeypatch.setenv("CALLMAP_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["--global", "--cluster", names["east"], "--format", "cilium"]
    result = await asyncio.to_thread(CliRunner().invoke, export, args)
    assert result.exit_code == 0, result.output
    policies = {p["metadata"]["name"]: p for p in yaml.safe_load_all(result.stdout)}
    assert set(policies) == {"callmap-cart", "callmap-frontend"}
    egress = policies["callmap-frontend"]["spec"]["egress"]
    assert egress[1]["toEndpoints"] == [
        {
            "matchLabels": {
                "app": "api",
                "tier": "backend",
                "k8s:io.kubernetes.pod.namespace": "shop",
                "io.cilium.k8s.policy.cluster": names["west"],
            }
        }
    ]
    listing = await asyncio.to_thread(
        CliRunner().invoke, list_command, ["--global", "--cluster", names["west"]]
    )
    assert f"reporter in namespace ops (cluster {names['west']}) calls:\n" in listing.output
