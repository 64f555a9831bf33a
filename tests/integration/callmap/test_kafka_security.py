"""callmap against a broker that authenticates (SASL_SSL with SCRAM, TLS client
certificates) and enforces ACLs: each component runs with its own principal and
ACLs, a capture principal cannot write edges, and an aggregator reads only the
clusters it was granted."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from helpers import aggregatekit, clustersets
from helpers.kafkasecurity import MIRRORED, SecureBroker, secure_broker
from helpers.streamkit import Reader, Worker, conn, names, of_cluster, pod, publish

from callmap.broker import ensure_topics, make_producer
from callmap.config import Settings, load_settings
from callmap.wire import DNS, EDGES, PODS, Edge
from callmap.wire.topics import SHARED_TOPICS, mirrored

pytestmark = pytest.mark.kafka

APP_ID = f"streams-sec-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(tmp_path_factory.mktemp("secure"), APP_ID) as broker:
        yield broker


def administrator(secured: SecureBroker) -> Settings:
    """The open listener's settings: an operator creating topics, a test reading them."""
    bootstrap = secured.broker.bootstrap
    return load_settings({"CALLMAP_KAFKA_BOOTSTRAP": bootstrap, "CALLMAP_TOPIC_PARTITIONS": "3"})


async def write(env: dict[str, str], topic: str) -> None:
    producer = make_producer(load_settings(env).kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"node-a")
    finally:
        await producer.stop()


@pytest.mark.parametrize("login", ["scram", "mtls"])
async def test_a_capture_principal_writes_raw_topics_and_cannot_write_edges(
    secured: SecureBroker, login: str
) -> None:
    admin = administrator(secured)
    await ensure_topics(admin.kafka, admin.topics)
    env = secured.scram("capture") if login == "scram" else secured.mtls("capture")
    await write(env, DNS.name)
    with pytest.raises(TopicAuthorizationFailedError):
        await write(env, EDGES.name)


async def test_a_wrong_password_is_refused(secured: SecureBroker) -> None:
    with pytest.raises(KafkaError):
        await asyncio.wait_for(write(secured.scram("capture", password="wrong"), DNS.name), 30)


def test_a_sink_with_bad_credentials_exits_non_zero_after_its_start_budget(
    secured: SecureBroker, tmp_path: Path
) -> None:
    env = {**secured.scram("sink", password="wrong"), "PATH": "/usr/bin:/bin"}
    command = ["sink", "jsonl", "--dir", str(tmp_path), "--start-timeout", "5"]
    result = subprocess.run(
        [sys.executable, "-m", "callmap", *command, "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stderr[-2000:]


async def test_watch_capture_streams_and_sink_principals_map_calls_together(
    secured: SecureBroker, tmp_path: Path
) -> None:
    admin = administrator(secured)
    await ensure_topics(admin.kafka, admin.topics)
    cluster = f"c-{uuid.uuid4().hex[:8]}"
    edges = await Reader(admin, EDGES.name).mark()
    watch, capture = load_settings(secured.scram("watch")), load_settings(secured.mtls("capture"))
    await publish(watch, [pod(cluster, "frontend", "10.1.0.10"), pod(cluster, "cart", "10.1.0.11")])
    streams = secured.scram("streams")
    worker = Worker(admin, APP_ID, tmp_path, environment=streams, replication=None)
    try:
        worker.wait_ready(timeout=90)
        await publish(capture, [conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")])
        found = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, timeout=60)
    finally:
        worker.stop()
    assert [(e.event, names(e)) for e in found] == [("new", ("frontend", "cart"))]
    command = ["sink", "jsonl", "--dir", str(tmp_path / "out"), "--once", "--metrics-port", "0"]
    sink = subprocess.run(
        [sys.executable, "-m", "callmap", *command],
        env={**os.environ, **secured.scram("sink")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sink.returncode == 0, sink.stderr[-3000:]
    written = "".join(path.read_text() for path in (tmp_path / "out").glob("*.jsonl"))
    assert cluster in written
    # the map readers' principal reads the edges and the identities (export's labels)
    reader = {**os.environ, **secured.mtls("map")}
    for command in (
        ["list", "--cluster", cluster],
        ["export", "--cluster", cluster, "--format", "networkpolicy"],
    ):
        shown = subprocess.run(
            [sys.executable, "-m", "callmap", *command],
            env=reader,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "frontend" in shown.stdout and "cart" in shown.stdout, shown.stdout


def of_east(messages: list[Edge], east: str) -> set[tuple[str, str]]:
    return {pair for pair in aggregatekit.current(messages) if pair[0].startswith(f"{east}/")}


async def test_an_aggregate_principal_maps_the_clusters_it_was_granted_and_no_other(
    secured: SecureBroker,
) -> None:
    admin = administrator(secured)
    (east,) = MIRRORED
    copies = {name: [mirrored(spec, name) for spec in SHARED_TOPICS] for name in (east, "west")}
    for specs in copies.values():  # as MirrorMaker 2 creates them at the hub
        await ensure_topics(admin.kafka, admin.topics, specs)
    frontend, cart, api = (clustersets.workload(n) for n in ("frontend", "cart", "api"))
    records = [
        (f"{east}.{PODS.name}", clustersets.pod(east, "frontend-1", "10.0.0.5", "frontend")),
        (f"{east}.{PODS.name}", clustersets.pod(east, "cart-1", "10.0.0.6", "cart")),
        (f"{east}.{EDGES.name}", clustersets.edge(east, frontend, cart, edge_id="e1")),
        (f"west.{PODS.name}", clustersets.pod("west", "api-1", "10.1.0.7", "api")),
        (f"west.{EDGES.name}", clustersets.edge("west", api, api, edge_id="w1")),
    ]
    await aggregatekit.publish(admin, records)
    aggregate = load_settings({**secured.scram("aggregate"), "CALLMAP_TOPIC_PARTITIONS": "3"})
    running = aggregatekit.Running(aggregate, peers=[[east, "west"]])
    try:
        await running.ready()
        # The shared edges topic holds the other tests' cluster too: east's edges only.
        wanted = {(f"{east}/shop/frontend", f"{east}/shop/cart")}
        deadline = time.monotonic() + 60
        while (found := of_east(await aggregatekit.global_topic(admin), east)) != wanted:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.5)
    finally:
        await running.end()
    assert east in running.worker.identities.stores
    assert "west" not in running.worker.identities.stores  # its copies are not even listed
    with pytest.raises(TopicAuthorizationFailedError):  # only MirrorMaker writes the copies
        await write(secured.scram("aggregate"), f"{east}.{EDGES.name}")
