"""Fixtures shared by every test: the one session-wide Kafka broker.

Integration tests never mock Kafka. The broker comes from, in order:
``CALLMAP_KAFKA_BOOTSTRAP`` (an external broker you run), testcontainers'
Apache Kafka image when a Docker engine answers, or a local KRaft broker that
callmap's own ``devkafka`` module starts from Maven Central jars.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from helpers.kafkakit import broker_settings

from callmap.config import Settings
from callmap.wire import (
    CaptureStats,
    ClusterInfo,
    DeadLetter,
    DnsAnswer,
    DnsAnswerBatch,
    Edge,
    EdgeSighting,
    Endpoint,
    NodeIdentity,
    PendingBatch,
    PodIdentity,
    Record,
    ServiceIdentity,
    ServicePort,
    ServiceWorkload,
    SightingBatch,
    SocketBatch,
    SocketObservation,
    StageStats,
    WorkloadRef,
)
from devtools.kafka import KAFKA_VERSION, DevBroker
from devtools.process import free_port

# The image the compose file uses too; kept at the same version as the jars.
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _kafka_container(port: int):  # type: ignore[no-untyped-def]
    """Apache Kafka's own image in KRaft mode, advertised on a fixed loopback port."""
    from testcontainers.core.container import DockerContainer

    settings = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    for name, value in settings.items():
        container = container.with_env(name, value)
    return container


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker, up for the whole test session."""
    external = os.environ.get("CALLMAP_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if os.environ.get("CALLMAP_TEST_DOCKER", "auto") != "no" and _docker_engine_answers():
        from testcontainers.core.waiting_utils import wait_for_logs

        port = free_port()
        with _kafka_container(port) as container:
            wait_for_logs(container, "Kafka Server started", timeout=120)
            yield f"127.0.0.1:{port}"
        return
    broker = DevBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def settings(kafka_bootstrap: str) -> Settings:
    """Settings for the test broker: one replica, few partitions (fast to create)."""
    return broker_settings(kafka_bootstrap)


HOSTILE = 'evil"name\n<script>,;|\\x00\u202e.example'


def sample_records(cluster: str = "test", node: str = "node-a") -> list[Record]:
    """One record of every wire type, with every optional field set."""
    dns = DnsAnswer(
        cluster=cluster,
        node=node,
        ts=1_700_000_000.25,
        client_ip="10.1.0.10",
        server_ip="10.96.0.10",
        transport="udp",
        qname="cartservice.shop.svc.cluster.local",
        qtype="A",
        answers=("10.96.4.2",),
        cnames=(),
        ttl=30,
        count=3,
    )
    sock = SocketObservation(
        cluster=cluster,
        node=node,
        ts=1_700_000_001.0,
        netns=4026532281,
        pod_uid="6d0c1f7e-2b1c-4f9e-9a43-3f9b3e1b8a11",
        local_ip="10.1.0.10",
        local_port=43210,
        remote_ip="10.1.0.11",
        remote_port=7070,
        role="client",
        first_seen=1_700_000_000.5,
    )
    workload = WorkloadRef(kind="Deployment", name="frontend")
    sighting = EdgeSighting(
        edge_id="e3b0c44298fc1c14",
        cluster=cluster,
        client=Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment"),
        server=Endpoint(type="ip", ip="203.0.113.9"),
        ports=(443,),
        sources=("socket-client",),
        first_seen=1.0,
        last_seen=2.0,
        count=2,
    )
    return [
        dns,
        sock,
        DnsAnswerBatch(cluster=cluster, node=node, records=(dns, dns)),
        SocketBatch(cluster=cluster, node=node, records=(sock,)),
        PodIdentity(
            cluster=cluster,
            uid="6d0c1f7e",
            namespace="shop",
            name="frontend-7d9f-abcde",
            ips=("10.1.0.10", "fd00::a"),
            node=node,
            host_network=False,
            workload=workload,
            labels={"app": "frontend", "odd": HOSTILE},
            created=1.0,
            deleted=None,
        ),
        ServiceIdentity(
            cluster=cluster,
            namespace="shop",
            name="cartservice",
            type="ClusterIP",
            cluster_ips=("10.96.4.2",),
            external_name=None,
            ports=(ServicePort(port=7070, name="grpc", target_port="grpc"),),
            workloads=(ServiceWorkload(namespace="shop", kind="Deployment", name="cartservice"),),
            exported=True,
        ),
        NodeIdentity(cluster=cluster, name=node, ips=("192.168.5.10",), deleted=None),
        ClusterInfo(
            cluster=cluster,
            uid="5b1c9a4e-2f0d-4c1e-9a7b-0d3e6f1a2b3c",
            domain="cluster.local",
            ts=1_700_000_000.0,
            heartbeat=30.0,
        ),
        Edge(
            edge_id="e3b0c44298fc1c14",
            event="new",
            cluster=cluster,
            client=Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment"),
            server=Endpoint(type="external", dns_name=HOSTILE),
            ports=(443,),
            sources=("dns", "socket-client"),
            first_seen=1.0,
            last_seen=2.0,
            count=5,
        ),
        CaptureStats(
            cluster=cluster,
            node=node,
            ts=10.0,
            interval=10.0,
            stages={"dns": StageStats(seen=10, emitted=7, dropped={"nxdomain": 3})},
        ),
        sighting,
        SightingBatch(sightings=(sighting,)),
        PendingBatch(cluster=cluster, node=node, due=70.0, dns=(dns,), sockets=(sock,)),
        DeadLetter(
            ts=11.0,
            stage="streams",
            error="not JSON",
            topic="callmap.dns.v1",
            partition=0,
            offset=42,
            key_b64="bm9kZS1h",
            payload_b64="e30=",
            cluster=cluster,
        ),
    ]


@pytest.fixture
def samples() -> list[Record]:
    return sample_records()
