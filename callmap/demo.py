"""``callmap demo``: the pipeline's real path as far as it is built.

Until the lab (issue #7) builds a multi-pod network, the demo proves the
foundation on a real broker: it starts the development Kafka broker (or uses
``CALLMAP_KAFKA_BOOTSTRAP``), creates every topic with its settings, publishes
a small shop's identities and edges through the wire contract, reads the
compacted edges topic back from the start as any subscriber would, and prints
the map it finds.
"""

from __future__ import annotations

import asyncio
import os
import time

import click
from rich.console import Console
from rich.table import Table

from callmap.broker import TopicState, ensure_topics, make_consumer, make_producer
from callmap.config import Settings, load_settings
from callmap.devkafka import DevBroker
from callmap.wire import EDGES, PODS, Edge, Endpoint, PodIdentity, WorkloadRef, decode, encode
from callmap.wire.codec import message_key

console = Console()


def sample_shop(cluster: str, now: float) -> tuple[list[PodIdentity], list[Edge]]:
    """A tiny shop: two pods and the edges between their workloads."""
    pods = [
        PodIdentity(
            cluster=cluster,
            uid=f"uid-{name}",
            namespace="shop",
            name=f"{name}-0",
            ips=(ip,),
            node="node-a",
            workload=WorkloadRef(kind="Deployment", name=name),
            created=now,
        )
        for name, ip in (("frontend", "10.1.0.10"), ("cartservice", "10.1.0.11"))
    ]
    frontend = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")
    servers = [
        Endpoint(
            type="workload",
            namespace="shop",
            name="cartservice",
            kind="Deployment",
            service="cartservice",
        ),
        Endpoint(type="workload", namespace="finance", name="ledger", kind="StatefulSet"),
        Endpoint(type="external", dns_name="api.stripe.com"),
    ]
    edges = [
        Edge(
            edge_id=f"demo-{index}",
            event="new",
            cluster=cluster,
            client=frontend,
            server=server,
            ports=(443,),
            sources=("dns",),
            first_seen=now,
            last_seen=now,
        )
        for index, server in enumerate(servers)
    ]
    return pods, edges


async def run_demo(settings: Settings) -> tuple[list[TopicState], list[Edge]]:
    states = await ensure_topics(settings.kafka, settings.topics)
    pods, edges = sample_shop(settings.cluster, time.time())
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for pod in pods:
            await producer.send(PODS.name, encode(pod), key=message_key(pod))
        for edge in edges:
            await producer.send(EDGES.name, encode(edge), key=message_key(edge))
        await producer.flush()
    finally:
        await producer.stop()
    return states, await read_edges(settings)


async def read_edges(settings: Settings, idle: float = 2.0) -> list[Edge]:
    """The current map: the latest state of every edge on the compacted topic."""
    consumer = make_consumer(settings.kafka, EDGES.name)
    await consumer.start()
    latest: dict[str, Edge] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=int(idle * 1000)):
            for messages in batch.values():
                for message in messages:
                    edge = decode(EDGES, message.value)
                    assert isinstance(edge, Edge)
                    latest[edge.edge_id] = edge
    finally:
        await consumer.stop()
    return [edge for edge in latest.values() if edge.event != "expired"]


def _describe(endpoint: Endpoint, namespace: str | None) -> str:
    if endpoint.type == "external":
        return f"{endpoint.dns_name} (external)"
    name = endpoint.name or endpoint.ip or endpoint.type
    return name if endpoint.namespace == namespace else f"{name} in namespace {endpoint.namespace}"


@click.command()
def demo() -> None:
    """Run callmap's real path on a local Kafka broker and print the map."""
    settings = load_settings()
    if "CALLMAP_KAFKA_BOOTSTRAP" not in os.environ:
        status = DevBroker.named("demo", 19092).start()
        console.print(
            f"Kafka running at {status.bootstrap} (stop: callmap dev kafka stop "
            "--name demo --port 19092)"
        )
        settings = load_settings({**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": status.bootstrap})
    states, edges = asyncio.run(run_demo(settings))
    table = Table(title="topics")
    for column in ("topic", "partitions", "cleanup.policy"):
        table.add_column(column)
    for state in states:
        table.add_row(state.name, str(state.partitions), state.configs.get("cleanup.policy", "?"))
    console.print(table)
    clients = sorted({(e.client.namespace, e.client.name) for e in edges}, key=str)
    for namespace, name in clients:
        console.print(f"{name} in namespace {namespace} calls:")
        servers = sorted(
            _describe(e.server, namespace)
            for e in edges
            if (e.client.namespace, e.client.name) == (namespace, name)
        )
        for server in servers:
            console.print(f"  - {server}")
    console.print("[dim]Sample records; the lab (issue #7) will produce them from real traffic.[/]")
