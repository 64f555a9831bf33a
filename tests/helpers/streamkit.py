"""Running real stream workers and reading what they announce, for the tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from aiokafka import TopicPartition

from callmap.broker import describe_topics, make_consumer, make_producer
from callmap.config import Settings
from callmap.wire import (
    DLQ,
    DNS,
    EDGES,
    NODES,
    PODS,
    SERVICES,
    SOCKETS,
    DeadLetter,
    DnsAnswer,
    DnsAnswerBatch,
    Edge,
    NodeIdentity,
    PodIdentity,
    Record,
    ServiceIdentity,
    SocketBatch,
    SocketObservation,
    decode,
    encode,
    encode_batches,
    message_key,
)
from callmap.wire.topics import TopicSpec
from devtools.process import free_port
from helpers import streamrecords as records

FAST = [  # a test that wants edges to expire asks for its own short --ttl
    "--grace",
    "2",
    "--refresh-interval",
    "3",
    "--ttl",
    "60",
    "--tick-interval",
    "1",
    "--session-timeout",
    "10",
    "--combine-interval",
    "0.5",
]


def pod(cluster: str, name: str, ip: str) -> PodIdentity:
    """The one pod of Deployment ``name`` in namespace ``shop``."""
    return records.pod(f"{name}-0", ip, uid=f"{cluster}-{name}", workload=name, cluster=cluster)


def cart_service(cluster: str) -> ServiceIdentity:
    return records.service("cartservice", "10.96.4.2", "cartservice", cluster=cluster)


def dns(cluster: str, qname: str, client: str, *ips: str) -> DnsAnswer:
    """An answer given now."""
    return records.answer(qname, client, *ips, ts=time.time(), cluster=cluster)


def conn(
    cluster: str,
    local: str,
    lport: int,
    remote: str,
    rport: int,
    role: str,
    *,
    transport: str = "tcp",
    origin: str = "proc",
) -> SocketObservation:
    """A connection seen now."""
    return records.socket(
        local,
        lport,
        remote,
        rport,
        role,
        ts=time.time(),
        origin=origin,
        transport=transport,
        cluster=cluster,
    )


class Worker:
    """One `callmap streams worker` process."""

    def __init__(
        self,
        settings: Settings,
        app_id: str,
        log_dir: Path,
        *args: str,
        replication: str | None = "1",
        environment: dict[str, str] | None = None,
    ) -> None:
        """``replication`` None: the brokers' default (three where there are three);
        ``environment``: more CALLMAP_* settings (credentials)."""
        self._again = (settings, app_id, log_dir, args, replication, environment)
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
            "CALLMAP_TOPIC_PARTITIONS": "3",
            "CALLMAP_TOPIC_REPLICATION": replication or "",
            **(environment or {}),
        }
        if replication is None:
            del env["CALLMAP_TOPIC_REPLICATION"]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "callmap",
                    "streams",
                    "worker",
                    "--app-id",
                    app_id,
                    "--metrics-port",
                    str(self.metrics_port),
                    "--data-dir",
                    str(log_dir),
                    *FAST,
                    *args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            if "[^Worker]: Ready" in self.log.read_text():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready: {self.log.read_text()[-3000:]}")

    def again(self) -> Worker:
        """Another worker started as this one was (say, in place of it, killed)."""
        settings, app_id, log_dir, args, replication, environment = self._again
        return Worker(
            settings, app_id, log_dir, *args, replication=replication, environment=environment
        )

    def wait_owning(self, timeout: float = 60) -> None:
        """Until the worker holds edge states: it owns partitions and has recovered them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(OSError):  # its metrics endpoint may not be up yet
                if self.gauge("edges") > 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"worker owns no edges: {self.log.read_text()[-3000:]}")

    def gauge(self, name: str) -> float:
        """A gauge of the worker's Prometheus endpoint (``callmap_streams_<name>``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        found = re.search(rf"^callmap_streams_{name} ([0-9.e+]+)$", text, re.MULTILINE)
        assert found, f"no gauge callmap_streams_{name}"
        return float(found.group(1))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def publish(settings: Settings, records: Iterable[Record]) -> None:
    """Identities one message each; raw records as per-node batches."""
    topics = {PodIdentity: PODS, ServiceIdentity: SERVICES, NodeIdentity: NODES}
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        dns: list[DnsAnswer] = []
        sockets: list[SocketObservation] = []
        for record in records:
            if isinstance(record, DnsAnswer):
                dns.append(record)
            elif isinstance(record, SocketObservation):
                sockets.append(record)
            else:
                await producer.send(
                    topics[type(record)].name, encode(record), key=message_key(record)
                )
        for topic, batch_type, batch in (
            (DNS, DnsAnswerBatch, dns),
            (SOCKETS, SocketBatch, sockets),
        ):
            if batch:
                node = batch[0].node
                for message in encode_batches(
                    batch_type, cluster=batch[0].cluster, node=node, records=batch
                ):  # type: ignore[arg-type]
                    await producer.send(topic.name, message.value, key=node.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def send_raw(settings: Settings, topic: str, value: bytes, key: bytes) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


class Reader:
    """Reads a topic from the offsets it had when the reader was made."""

    def __init__(self, settings: Settings, topic: str, spec: TopicSpec | None = None) -> None:
        self.settings, self.topic = settings, topic
        self.spec = spec or {EDGES.name: EDGES, DLQ.name: DLQ}[topic]
        self.start: dict[TopicPartition, int] = {}
        self.placed: list[tuple[int, bytes | None]] = []
        """(partition, key) of every record kept, as read."""
        self.held_at: float | None = None
        """When the last :meth:`read`'s ``until`` first held (``time.monotonic``)."""

    async def mark(self) -> Reader:
        (state,) = await describe_topics(self.settings.kafka, [self.topic])
        partitions = [TopicPartition(self.topic, p) for p in range(state.partitions)]
        consumer = make_consumer(self.settings.kafka)
        await consumer.start()
        try:
            consumer.assign(partitions)
            self.start = dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()
        return self

    async def read(
        self,
        keep: Callable[[Record], bool],
        until: Callable[[list], bool],  # type: ignore[type-arg]
        timeout: float = 40.0,
        settle: float = 0.0,
    ) -> list:  # type: ignore[type-arg]
        """Records kept by ``keep``, once ``until`` holds (then ``settle`` more seconds)."""
        spec = self.spec
        consumer = make_consumer(self.settings.kafka)
        await consumer.start()
        found: list = []  # type: ignore[type-arg]
        try:
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            deadline = time.monotonic() + timeout
            done_at: float | None = None
            self.held_at = None
            while time.monotonic() < deadline:
                if done_at is None and until(found):
                    self.held_at = time.monotonic()
                    done_at = self.held_at + settle
                if done_at is not None and time.monotonic() >= done_at:
                    break
                for messages in (await consumer.getmany(timeout_ms=300)).values():
                    for message in messages:
                        if not message.value:  # a tick on the sightings topic
                            continue
                        record = decode(spec, message.value)
                        if keep(record):
                            found.append(record)
                            self.placed.append((message.partition, message.key))
            return found
        finally:
            await consumer.stop()


def of_cluster(cluster: str) -> Callable[[Record], bool]:
    return lambda record: isinstance(record, Edge) and record.cluster == cluster


def names(edge: Edge) -> tuple[str, str]:
    def name(e):  # type: ignore[no-untyped-def]
        return e.name or e.dns_name or e.ip or e.type

    return name(edge.client), name(edge.server)


def dead_letters_from(topic: str) -> Callable[[Record], bool]:
    return lambda record: isinstance(record, DeadLetter) and record.topic == topic
