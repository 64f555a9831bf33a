"""Benchmarks of the stream app on a real broker this script starts.

1. Throughput: raw records per second through one worker (resolved, and
   every sighting it forwarded merged into the edges table), side by side
   with a plain aiokafka consume-and-decode loop over the same records in
   the same run (goals: at least 50 % of the loop warm, 35 % cold). The
   traffic is what capture publishes: 2,000 clients each call 5 services;
   each node's batch of a one-second window holds each of its calls once
   (capture folds repeats within a window), and the calls repeat window
   after window. Four runs of 300,000 records: DNS answers *cold* (the
   first windows make all 10,000 edges new) and *warm* (every edge known);
   then the same calls as socket observations, first seen so (new routes, a
   new source for every edge), then warm. Before each run the worker is
   stopped with SIGSTOP while its backlog is produced and the plain loop
   reads it. This machine is shared and noisy, so the four runs are done in
   ``ROUNDS`` rounds, each on a new cluster's calls (so that cold is cold),
   and the table shows medians and the range of the shares.
2. Latency: events produced at about 1,000/s, each proving a new edge; p50
   and p99 from the event's time to its edge on the edges topic (goal: p99
   under 2 s).
3. Memory: RSS of a worker with 100,000 pods and 10,000 services in the
   identity store, next to the same worker at start (goal: under 400 MB): the
   worker of the runs above, restarted, so that it also holds their edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table
from streamtraffic import (
    BATCH,
    CLIENTS,
    SERVED,
    THROUGHPUT_RECORDS,
    answer,
    pod,
    service,
    steady_answers,
    steady_connections,
)

from callmap.broker import ensure_topics, make_consumer, make_producer
from callmap.config import Settings, load_settings
from callmap.wire import (
    DNS,
    EDGES,
    PODS,
    SERVICES,
    SOCKETS,
    DnsAnswer,
    DnsAnswerBatch,
    Edge,
    SocketBatch,
    SocketObservation,
    decode,
    encode,
    encode_batches,
    message_key,
)
from callmap.wire.topics import TopicSpec
from devtools.kafka import DevBroker
from devtools.process import free_port

PARTITIONS = 6  # of every topic the bench and its worker create
LATENCY_RATE, LATENCY_SECONDS = 1_000, 10
MEMORY_PODS, MEMORY_SERVICES = 100_000, 10_000
ROUNDS = 3


async def publish_identities(
    settings: Settings, cluster: str, pods: int, services: int, workloads: int = 5000
) -> None:
    producer = make_producer(settings.kafka, linger_ms=50, max_batch_size=1_000_000)
    await producer.start()
    try:
        for n in range(pods):
            record = pod(cluster, n, workloads)
            await producer.send(PODS.name, encode(record), key=message_key(record))
        for n in range(services):
            record = service(cluster, n)
            await producer.send(SERVICES.name, encode(record), key=message_key(record))
        await producer.flush()
    finally:
        await producer.stop()


async def publish_raw(settings: Settings, records: Sequence[DnsAnswer | SocketObservation]) -> None:
    """Raw records as capture publishes them: per-node batches of at most BATCH."""
    producer = make_producer(settings.kafka, linger_ms=20, compression_type="lz4")
    await producer.start()
    try:
        by_node: dict[str, list[DnsAnswer | SocketObservation]] = {}
        for record in records:
            by_node.setdefault(record.node, []).append(record)
        for node, mine in by_node.items():
            for start in range(0, len(mine), BATCH):
                chunk = mine[start : start + BATCH]
                dns = isinstance(chunk[0], DnsAnswer)
                batch_type = DnsAnswerBatch if dns else SocketBatch
                for m in encode_batches(
                    batch_type,  # type: ignore[arg-type]
                    cluster=chunk[0].cluster,
                    node=node,
                    records=chunk,  # type: ignore[arg-type]
                ):
                    await producer.send((DNS if dns else SOCKETS).name, m.value, key=node.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def plain_loop(settings: Settings, spec: TopicSpec, start: dict, expected: int) -> float:  # type: ignore[type-arg]
    """Seconds a bare aiokafka loop needs to consume and decode ``expected`` records of
    ``spec`` from the offsets ``start``."""
    consumer = make_consumer(settings.kafka, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    seen = 0
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        begin = time.perf_counter()
        while seen < expected:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    seen += len(decode(spec, message.value).records)  # type: ignore[attr-defined]
        return time.perf_counter() - begin
    finally:
        await consumer.stop()


class Worker:
    def __init__(
        self, bootstrap: str, log: Path, metrics_port: int, app_id: str | None = None
    ) -> None:
        self.app_id = app_id or f"bench-{uuid.uuid4().hex[:6]}"
        self.metrics_port = metrics_port
        self.log = log
        env = {
            **os.environ,
            "CALLMAP_KAFKA_BOOTSTRAP": bootstrap,
            "CALLMAP_LOG_LEVEL": "WARNING",
            "CALLMAP_TOPIC_PARTITIONS": str(PARTITIONS),  # the raw topics have as many
        }
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "callmap",
                    "--log-level",
                    "INFO",
                    "streams",
                    "worker",
                    "--app-id",
                    self.app_id,
                    "--metrics-port",
                    str(metrics_port),
                    "--refresh-interval",
                    "600",
                    "--data-dir",
                    str(log.parent),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text()[-3000:])
            time.sleep(0.2)

    def metrics(self, *patterns: str) -> list[float]:
        """The values of the metrics ``patterns`` match, from one scrape."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as answer:
            text = answer.read().decode()
        matches = [re.search(pattern + r" ([0-9.e+]+)", text) for pattern in patterns]
        return [float(match.group(1)) if match else 0.0 for match in matches]

    def progress(self) -> tuple[float, float, float]:
        """Events resolved; sightings forwarded to their owners, merged by owners."""
        resolved, forwarded, merged = self.metrics(
            r'callmap_streams_events_total\{event="resolved"\}',
            r'callmap_streams_emitted_total\{stage="sightings"\}',
            r'callmap_streams_seen_total\{stage="merge"\}',
        )
        return resolved, forwarded, merged

    def identities(self) -> float:
        return self.metrics(r'callmap_streams_seen_total\{stage="identities"\}')[0]

    def cpu_seconds(self) -> float:
        """CPU time the worker has used (user and system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def edge_latencies(settings: Settings, cluster: str, start: dict, count: int) -> list[float]:  # type: ignore[type-arg]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    latencies: list[float] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + 60
        while len(latencies) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    edge = decode(EDGES, m.value)
                    if isinstance(edge, Edge) and edge.cluster == cluster and edge.event == "new":
                        latencies.append(m.timestamp / 1000 - edge.first_seen)
        return latencies
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str, partitions: int) -> dict:  # type: ignore[type-arg]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        broker = DevBroker(Path(tmp) / "kafka", port=free_port())
        broker.start()
        try:
            settings = load_settings(
                {
                    "CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "CALLMAP_TOPIC_PARTITIONS": str(PARTITIONS),
                }
            )
            asyncio.run(ensure_topics(settings.kafka, settings.topics))
            run(console, settings, broker.bootstrap, Path(tmp))
        finally:
            broker.stop()


def caught_up(worker: Worker, resolved: int) -> float:
    """Seconds until ``resolved`` records are resolved and every forwarded sighting merged."""
    start = time.perf_counter()
    while True:
        done, forwarded, merged = worker.progress()
        if done >= resolved and merged >= forwarded:
            return time.perf_counter() - start
        if time.perf_counter() - start > 600:
            raise RuntimeError("worker did not finish")
        time.sleep(0.1)


@contextlib.contextmanager
def stopped(worker: Worker) -> Iterator[None]:
    """The worker stopped (SIGSTOP) for the duration: it neither consumes nor competes."""
    worker.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        worker.process.send_signal(signal.SIGCONT)


RUNS = (
    ("DNS answers, cold: all 10,000 edges new", DNS, steady_answers),
    ("DNS answers, warm: every edge known", DNS, steady_answers),
    ("socket observations, the calls first seen as connections", SOCKETS, steady_connections),
    ("socket observations, warm", SOCKETS, steady_connections),
)


def throughput_round(
    settings: Settings, worker: Worker, cluster: str, resolved: float
) -> list[tuple[float, float, float]]:
    """The four runs of :data:`RUNS` on a new cluster's traffic: seconds of the plain
    loop, of the worker, and of CPU the worker used meanwhile.

    Before each run the worker is stopped while the backlog is produced and
    the plain loop reads that same backlog.
    """
    n = THROUGHPUT_RECORDS
    before = worker.identities()
    asyncio.run(publish_identities(settings, cluster, CLIENTS, SERVED))
    while worker.identities() < before + CLIENTS + SERVED:
        time.sleep(0.2)
    seconds, later = [], time.time()
    for _, spec, records in RUNS:
        backlog = records(cluster, n, later)
        later = backlog[-1].ts + 1
        with stopped(worker):
            start = asyncio.run(end_offsets(settings, spec.name, PARTITIONS))
            asyncio.run(publish_raw(settings, backlog))
            plain = asyncio.run(plain_loop(settings, spec, start, n))
        resolved += n
        cpu = worker.cpu_seconds()
        wall = caught_up(worker, resolved)
        seconds.append((plain, wall, worker.cpu_seconds() - cpu))
    return seconds


def run(console: Console, settings: Settings, bootstrap: str, tmp: Path) -> None:
    # 1. throughput: ROUNDS rounds of the four runs, each on a new cluster's calls
    n = THROUGHPUT_RECORDS
    worker = Worker(bootstrap, tmp / "worker.log", free_port())
    try:
        worker.wait_for("identity store loaded")
        rounds = [
            throughput_round(settings, worker, f"tput{r}", r * len(RUNS) * n) for r in range(ROUNDS)
        ]
        table = Table(
            title=f"stream throughput: {n:,} raw records a run, batches of {BATCH},"
            f" median of {ROUNDS} rounds"
        )
        columns = ("run", "plain loop s", "worker s", "worker CPU s", "worker records/s")
        for column in (*columns, "share of plain"):
            table.add_column(column, justify="right")
        for index, (label, _, _) in enumerate(RUNS):
            plain = statistics.median(r[index][0] for r in rounds)
            mine = statistics.median(r[index][1] for r in rounds)
            cpu = statistics.median(r[index][2] for r in rounds)
            shares = sorted(100 * r[index][0] / r[index][1] for r in rounds)
            goal = 50 if "warm" in label else 35
            table.add_row(
                label,
                f"{plain:.2f}",
                f"{mine:.2f}",
                f"{cpu:.2f}",
                f"{n / mine:,.0f}",
                f"{statistics.median(shares):.0f} % ({shares[0]:.0f}-{shares[-1]:.0f};"
                f" goal {goal} %)",
            )
        console.print(table)

        # 2. latency, on the same (caught up) worker: every event a new edge
        cluster = "lat"
        total = LATENCY_RATE * LATENCY_SECONDS
        before = worker.identities()
        asyncio.run(publish_identities(settings, cluster, total, 10, workloads=total))
        while worker.identities() < before + total + 10:
            time.sleep(0.2)
        start_offsets = asyncio.run(end_offsets(settings, EDGES.name, PARTITIONS))

        async def paced() -> list[float]:
            for second in range(LATENCY_SECONDS):
                tick = time.time()
                chunk = [
                    answer(cluster, second * LATENCY_RATE + n, n % 10, time.time())
                    for n in range(LATENCY_RATE)
                ]
                await publish_raw(settings, chunk)
                await asyncio.sleep(max(0.0, 1.0 - (time.time() - tick)))
            return await edge_latencies(settings, cluster, start_offsets, total)

        latencies = sorted(asyncio.run(paced()))
        table = Table(
            title=f"latency: {LATENCY_RATE:,} events/s for {LATENCY_SECONDS} s, each a new edge"
        )
        for column in ("edges", "p50 s", "p99 s", "max s"):
            table.add_column(column, justify="right")
        p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
        table.add_row(
            f"{len(latencies):,} of {total:,}",
            f"{statistics.median(latencies):.3f}",
            f"{p99:.3f} (goal < 2)",
            f"{latencies[-1]:.3f}",
        )
        console.print(table)

    finally:
        worker.stop()

    # 3. memory: the worker restarted (its raw backlog consumed, its edges recovered),
    # before and after 100,000 pods and 10,000 services
    worker = Worker(bootstrap, tmp / "memory.log", free_port(), worker.app_id)
    try:
        worker.wait_for("identity store loaded")
        time.sleep(2)
        baseline, before = worker.rss_mb(), worker.identities()
        asyncio.run(publish_identities(settings, "mem", MEMORY_PODS, MEMORY_SERVICES))
        while worker.identities() < before + MEMORY_PODS + MEMORY_SERVICES:
            time.sleep(0.5)
        time.sleep(2)
        full = worker.rss_mb()
    finally:
        worker.stop()
    table = Table(title="worker memory")
    for column in ("identity store", "RSS MB"):
        table.add_column(column, justify="right")
    table.add_row(f"at start ({before:,.0f} identities of the runs above)", f"{baseline:.0f}")
    table.add_row(
        f"+ {MEMORY_PODS:,} pods and {MEMORY_SERVICES:,} services", f"{full:.0f} (goal < 400)"
    )
    console.print(table)


if __name__ == "__main__":
    main()
