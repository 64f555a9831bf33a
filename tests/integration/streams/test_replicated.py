"""On three brokers every topic has three replicas and takes writes with one broker down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.streamkit import Reader, Worker, cart_service, dns, names, of_cluster, pod, publish

from callmap.broker import describe_topics, ensure_topics
from callmap.config import Settings, load_settings
from callmap.wire import ALL_TOPICS, EDGES
from devtools.kafkacluster import DevKafkaCluster

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKafkaCluster]:
    cluster = DevKafkaCluster(tmp_path_factory.mktemp("kafka3"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def settings(three_brokers: DevKafkaCluster) -> Settings:
    return load_settings(
        {"CALLMAP_KAFKA_BOOTSTRAP": three_brokers.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "3"}
    )


async def test_every_topic_gets_three_replicas_and_needs_two_for_a_write(
    settings: Settings,
) -> None:
    states = await ensure_topics(settings.kafka, settings.topics)
    assert {s.name for s in states} == {spec.name for spec in ALL_TOPICS}
    for state in states:
        assert state.replication == 3, state.name
        assert state.configs["min.insync.replicas"] == "2", state.name


async def test_a_worker_keeps_announcing_while_one_broker_is_down(
    settings: Settings, three_brokers: DevKafkaCluster, tmp_path: Path
) -> None:
    await ensure_topics(settings.kafka, settings.topics)
    cluster, app_id = f"c-{uuid.uuid4().hex[:8]}", f"streams-{uuid.uuid4().hex[:8]}"
    edges = await Reader(settings, EDGES.name).mark()
    await publish(
        settings,
        [pod(cluster, "frontend", "10.1.0.10"), pod(cluster, "cartservice", "10.1.0.11")],
    )
    await publish(settings, [cart_service(cluster)])
    worker = Worker(settings, app_id, tmp_path, replication=None)
    try:
        worker.wait_ready()
        (changelog,) = await describe_topics(settings.kafka, [f"{app_id}-edges-changelog"])
        assert changelog.replication == 3
        assert changelog.configs["min.insync.replicas"] == "2"

        three_brokers.brokers[2].stop()  # two of three replicas stay in sync
        await publish(
            settings, [dns(cluster, "cartservice.shop.svc.cluster.local", "10.1.0.10", "10.96.4.2")]
        )
        found = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, timeout=90)
    finally:
        worker.stop()
        await asyncio.to_thread(three_brokers.brokers[2].start)
    assert [(e.event, names(e)) for e in found] == [("new", ("frontend", "cartservice"))]
