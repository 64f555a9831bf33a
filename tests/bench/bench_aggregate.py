"""Benchmark of ``callmap aggregate`` on a real broker this script starts.

Many clusters mirrored into one hub (``c00.callmap.edges.v1``, ...: the
layout MirrorMaker 2 leaves): by default 50 clusters of 20,000 edges each,
1,000,000 source edges. One in ten is a call into the next cluster (a peer)
that the source cluster could only name by address, so the aggregator looks
it up in the peer's identities; the rest are workload to workload.

Side by side, in the same run: a plain aiokafka loop that consumes and
decodes every edge of every cluster's topic, and one aggregator worker (a
``callmap aggregate`` process) from start to every global edge announced:
identities loaded, every source edge replayed and named, and each global edge
published ``new``. Also the worker's RSS once done, next to its RSS at start.

    python tests/bench/bench_aggregate.py [--clusters 50] [--edges 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from aggregate.sources import mirrored_name
from callmap.broker import ensure_topics, make_consumer, make_producer
from callmap.config import Settings, load_settings
from callmap.wire import (
    CLUSTERS,
    EDGES,
    PODS,
    ClusterInfo,
    Edge,
    Endpoint,
    PodIdentity,
    WorkloadRef,
    decode,
    encode,
    message_key,
)
from devtools.kafka import DevBroker
from devtools.process import free_port

PARTITIONS = 3
WORKLOADS = 200  # per cluster: clients and servers
PODS_PER_CLUSTER = 400


def cluster_name(n: int) -> str:
    return f"c{n:02d}"


def pod_ip(cluster: int, n: int) -> str:
    return f"10.{cluster}.{n // 250}.{n % 250 + 1}"


def identities(cluster: int) -> list[PodIdentity]:
    name = cluster_name(cluster)
    return [
        PodIdentity(
            cluster=name,
            uid=f"{name}-pod-{n}",
            namespace="shop",
            name=f"w{n % WORKLOADS}-{n}",
            ips=(pod_ip(cluster, n),),
            workload=WorkloadRef(kind="Deployment", name=f"w{n % WORKLOADS}"),
            created=0.0,
        )
        for n in range(PODS_PER_CLUSTER)
    ]


def source_edges(cluster: int, count: int, clusters: int) -> list[Edge]:
    name = cluster_name(cluster)
    peer = (cluster + 1) % clusters
    edges = []
    for n in range(count):
        client = Endpoint(
            type="workload", namespace="shop", name=f"w{n % WORKLOADS}", kind="Deployment"
        )
        if n % 10 == 0:  # into the peer, named only by address here
            server = Endpoint(type="ip", ip=pod_ip(peer, (n // WORKLOADS) % PODS_PER_CLUSTER))
        else:
            server = Endpoint(
                type="workload", namespace=f"ns{n // WORKLOADS}", name=f"s{n}", kind="Deployment"
            )
        edges.append(
            Edge(
                edge_id=f"{name}-{n:08x}",
                event="new",
                cluster=name,
                client=client,
                server=server,
                ports=(8080,),
                sources=("socket-client",),
                first_seen=1.0,
                last_seen=time.time(),
                count=1,
            )
        )
    return edges


async def publish(settings: Settings, clusters: int, edges: int) -> int:
    producer = make_producer(settings.kafka, linger_ms=50, max_batch_size=512 * 1024)
    await producer.start()
    total = 0
    try:
        for cluster in range(clusters):
            name = cluster_name(cluster)
            pending = []
            for record in identities(cluster):
                pending.append(
                    await producer.send(
                        mirrored_name(name, PODS), encode(record), key=message_key(record)
                    )
                )
            beat = ClusterInfo(cluster=name, uid=f"uid-{name}", ts=time.time())
            pending.append(
                await producer.send(mirrored_name(name, CLUSTERS), encode(beat), key=name.encode())
            )
            for record in source_edges(cluster, edges, clusters):
                pending.append(
                    await producer.send(
                        mirrored_name(name, EDGES), encode(record), key=record.edge_id.encode()
                    )
                )
                total += 1
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return total


async def plain_loop(settings: Settings, topics: list[str], expected: int) -> float:
    """Seconds a bare aiokafka loop needs to consume and decode every source edge."""
    consumer = make_consumer(settings.kafka, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        start = time.perf_counter()
        while seen < expected:
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for message in messages:
                    decode(EDGES, message.value)  # type: ignore[arg-type]
                    seen += 1
        return time.perf_counter() - start
    finally:
        await consumer.stop()


def metric(port: int, pattern: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    match = re.search(pattern + r" ([0-9.e+]+)", text)
    return float(match.group(1)) if match else 0.0


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def run_worker(
    bootstrap: str, log: Path, clusters: int, expected: int
) -> tuple[float, float, float]:
    """(seconds to every global edge announced, RSS at start, RSS at the end) of one worker."""
    port = free_port()
    peers = [f"{cluster_name(c)},{cluster_name((c + 1) % clusters)}" for c in range(clusters)]
    env = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": bootstrap, "CALLMAP_TOPIC_PARTITIONS": "12"}
    command = [sys.executable, "-m", "callmap", "aggregate", "--metrics-port", str(port)]
    for group in peers:
        command += ["--peers", group]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        start = time.perf_counter()
        rss_start = 0.0
        while metric(port, r'callmap_aggregate_emitted_total\{stage="global_edges"\}') < expected:
            if process.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            if not rss_start and metric(port, "callmap_aggregate_identities") > 0:
                rss_start = rss_mb(process.pid)
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        return elapsed, rss_start, rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--edges", type=int, default=20_000)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        broker = DevBroker(Path(tmp) / "kafka", port=free_port())
        broker.start()
        try:
            settings = load_settings(
                {"CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "3"}
            )
            names = [cluster_name(c) for c in range(args.clusters)]
            specs = [
                dataclasses.replace(spec, name=mirrored_name(n, spec))
                for n in names
                for spec in (EDGES, PODS, CLUSTERS)
            ]
            asyncio.run(ensure_topics(settings.kafka, settings.topics, specs))
            began = time.perf_counter()
            total = asyncio.run(publish(settings, args.clusters, args.edges))
            console.print(
                f"published {total:,} source edges in {time.perf_counter() - began:.0f} s"
            )
            edge_topics = [mirrored_name(n, EDGES) for n in names]
            plain = asyncio.run(plain_loop(settings, edge_topics, total))
            # Global edges: every source edge is its own (distinct servers), but the
            # cross-cluster ones that name the same peer workload merge.
            expected = len(set(_global_pairs(args.clusters, args.edges)))
            seconds, rss_start, rss_end = run_worker(
                broker.bootstrap, Path(tmp) / "aggregate.log", args.clusters, expected
            )
        finally:
            broker.stop()
    table = Table(title=f"aggregate: {args.clusters} clusters x {args.edges:,} edges, one worker")
    for column in ("loop", "seconds", "source edges/s", "share of plain loop"):
        table.add_column(column, justify="right")
    table.add_row(
        "plain aiokafka (consume + decode)", f"{plain:.1f}", f"{total / plain:,.0f}", "100 %"
    )
    table.add_row(
        "aggregate worker (to every global edge announced)",
        f"{seconds:.1f}",
        f"{total / seconds:,.0f}",
        f"{100 * plain / seconds:.0f} %",
    )
    console.print(table)
    memory = Table(title="aggregate worker memory")
    for column in ("when", "RSS MB"):
        memory.add_column(column, justify="right")
    memory.add_row("identities loaded", f"{rss_start:.0f}")
    memory.add_row(f"{expected:,} global edges held", f"{rss_end:.0f}")
    console.print(memory)


def _global_pairs(clusters: int, edges: int) -> list[tuple[str, str]]:
    """The global edges the scenario means, counted independently of the aggregator."""
    pairs = []
    for cluster in range(clusters):
        peer = (cluster + 1) % clusters
        for n in range(edges):
            client = f"{cluster_name(cluster)}/w{n % WORKLOADS}"
            if n % 10 == 0:
                pod = (n // WORKLOADS) % PODS_PER_CLUSTER
                pairs.append((client, f"{cluster_name(peer)}/w{pod % WORKLOADS}"))
            else:
                pairs.append((client, f"{cluster_name(cluster)}/ns{n // WORKLOADS}/s{n}"))
    return pairs


if __name__ == "__main__":
    main()
