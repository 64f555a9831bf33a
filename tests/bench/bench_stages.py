"""Benchmark: the stream stages alone, without Faust or Kafka, on the worker bench's traffic.

The same records as ``bench_streams.py`` (2,000 clients calling 5 services
each, window after window), as the messages capture publishes, go through
what a worker does to them: the resolve stage (it decodes the messages whose
records it does not know by their bytes, :mod:`streams.repeats`), the
sightings encoded to their owners' partitions and decoded again, and the
merge stage. Baseline
in the same run: decoding the same messages alone, which is all the plain
aiokafka loop of ``bench_streams.py`` does besides fetching. The share of that
baseline is the ceiling a worker could reach if Faust and Kafka cost nothing;
the gap between it and the worker's share is what the adapter costs.

``--profile`` prints where the warm runs spend their time (cProfile).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from streamtraffic import (
    BATCH,
    CLIENTS,
    SERVED,
    THROUGHPUT_RECORDS,
    pod,
    service,
    steady_answers,
    steady_connections,
)

from callmap.counters import Counters
from callmap.wire import (
    DNS,
    PODS,
    SERVICES,
    SIGHTINGS,
    SOCKETS,
    DnsAnswer,
    DnsAnswerBatch,
    SightingBatch,
    SocketBatch,
    SocketObservation,
    decode,
    encode,
    encode_batches,
    encode_sighting_batches,
    message_key,
)
from callmap.wire.topics import TopicSpec, owner_partition
from streams.combine import Combiner
from streams.mergestage import MergeSettings, MergeStage
from streams.resolvestage import Identities, ResolveSettings, ResolveStage

CLUSTER = "tput"
PARTITIONS = 6
REPEATS = 3


def messages(records: Sequence[DnsAnswer | SocketObservation]) -> list[bytes]:
    """The records as capture publishes them: per-node batches of at most BATCH."""
    by_node: dict[str, list[DnsAnswer | SocketObservation]] = {}
    for record in records:
        by_node.setdefault(record.node, []).append(record)
    out = []
    for node, mine in by_node.items():
        for start in range(0, len(mine), BATCH):
            chunk = mine[start : start + BATCH]
            kind = DnsAnswerBatch if isinstance(chunk[0], DnsAnswer) else SocketBatch
            out += [
                m.value
                for m in encode_batches(kind, cluster=CLUSTER, node=node, records=chunk)  # type: ignore[arg-type]
            ]
    return out


class Worker:
    """A worker's stages in one process: resolve, repartition, merge."""

    def __init__(self) -> None:
        self.counters = Counters()
        settings = ResolveSettings()
        self.identities = Identities(settings, self.counters)
        for n in range(CLIENTS):
            a_pod = pod(CLUSTER, n)
            self.identities.apply(PODS.name, message_key(a_pod) or b"", encode(a_pod))
        for n in range(SERVED):
            a_service = service(CLUSTER, n)
            self.identities.apply(SERVICES.name, message_key(a_service) or b"", encode(a_service))
        self.resolve = ResolveStage(self.identities, settings, self.counters, Combiner(5.0))
        self.merge = MergeStage({}, MergeSettings(600.0, 86400.0, PARTITIONS), self.counters)

    def run(self, spec: TopicSpec, values: list[bytes], now: float) -> None:
        for value in values:
            sightings, _ = self.resolve.message(spec, value, now)
            sightings += self.resolve.due(now)
            by_partition: dict[int, list] = {}  # type: ignore[type-arg]
            for sighting in sightings:
                by_partition.setdefault(owner_partition(sighting.edge_id, PARTITIONS), []).append(
                    sighting
                )
            for partition, group in by_partition.items():
                for message in encode_sighting_batches(group, 900_000):
                    owned = decode(SIGHTINGS, message.value)
                    assert isinstance(owned, SightingBatch)
                    self.merge.sightings(partition, owned, now)


def decode_all(spec: TopicSpec, values: list[bytes]) -> float:
    """Seconds to decode every message, as the plain loop does."""
    start = time.perf_counter()
    for value in values:
        decode(spec, value)
    return time.perf_counter() - start


def main() -> None:
    profile = "--profile" in sys.argv
    n = THROUGHPUT_RECORDS
    start = time.time()
    dns_cold = messages(steady_answers(CLUSTER, n, start))
    dns_warm = messages(steady_answers(CLUSTER, n, start + 100))
    sockets_first = messages(steady_connections(CLUSTER, n, start + 200))
    sockets_warm = messages(steady_connections(CLUSTER, n, start + 300))
    runs: list[tuple[str, TopicSpec, list[bytes], float]] = [
        ("DNS, cold (10,000 new edges)", DNS, dns_cold, start + 60),
        ("DNS, warm (every edge known)", DNS, dns_warm, start + 160),
        ("sockets, the calls first seen as connections", SOCKETS, sockets_first, start + 260),
        ("sockets, warm", SOCKETS, sockets_warm, start + 360),
    ]
    decode_only = {
        spec.name: min(decode_all(spec, values) for _ in range(REPEATS))
        for spec, values in ((DNS, dns_warm), (SOCKETS, sockets_warm))
    }
    results = []
    profiler = cProfile.Profile() if profile else None
    for _ in range(REPEATS):  # each repeat a fresh worker: cold is cold every time
        worker = Worker()
        for label, spec, values, now in runs:
            if profiler is not None and "warm" in label:
                profiler.enable()
            started = time.perf_counter()
            worker.run(spec, values, now)
            seconds = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
            results.append((label, spec, seconds))
    table = Table(
        title=f"stream stages without Faust or Kafka: {n:,} records a run, best of {REPEATS}"
    )
    for column in ("run", "seconds", "records/s", "share of decode alone"):
        table.add_column(column, justify="right")
    for spec in (DNS, SOCKETS):
        table.add_row(
            f"decode alone, {spec.name}",
            f"{decode_only[spec.name]:.2f}",
            f"{n / decode_only[spec.name]:,.0f}",
            "100 %",
        )
        for label, of, _, _ in runs:
            if of is spec:
                best = min(seconds for run, _, seconds in results if run == label)
                table.add_row(
                    label,
                    f"{best:.2f}",
                    f"{n / best:,.0f}",
                    f"{100 * decode_only[spec.name] / best:.0f} %",
                )
    Console().print(table)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
