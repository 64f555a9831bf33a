"""Benchmark: what one Prometheus scrape of ``callmap metrics`` costs, by map size.

A map of N live edges (clients calling workloads, services and externals, in
one cluster) is held as the exporter holds it (an EdgeBook); a scrape turns it
into series within the bound and renders the exposition text. Baseline in the
same run: rendering as many plain series with prometheus_client alone (four
families, as an edge has four series), which any exporter pays. Each row is
the best of several scrapes; the body size is what Prometheus downloads.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from rich.console import Console
from rich.table import Table

from callmap.config import KafkaSettings
from callmap.wire import Edge, Endpoint
from sinks.changes import Change
from sinks.maps.exporter import ServiceGraphCollector
from sinks.maps.follower import Follower
from sinks.maps.formats.servicegraph import DEFAULT_MAX_SERIES, LABELS

SIZES = (1_000, 10_000, 100_000)
FAMILIES = ("plain_a", "plain_b", "plain_c", "plain_d")
"""As many families as an edge has series (sightings, first and last seen, the service
graph's count), each with as many series."""
REPEATS = 3


def edges(count: int) -> list[Edge]:
    out = []
    for n in range(count):
        client = Endpoint(
            type="workload", namespace=f"ns{n % 50}", name=f"c{n // 10}", kind="Deployment"
        )
        if n % 5 == 4:
            server = Endpoint(type="external", dns_name=f"api{n}.example.org")
        else:
            server = Endpoint(
                type="workload", namespace=f"ns{(n + 1) % 50}", name=f"s{n}", kind="Deployment"
            )
        out.append(
            Edge(
                edge_id=f"e{n}",
                event="refresh",
                cluster="bench",
                client=client,
                server=server,
                ports=(8080,),
                first_seen=1.0,
                last_seen=2.0 + n,
                count=1 + n % 997,
            )
        )
    return out


class Plain(Collector):
    def __init__(self, series: int) -> None:
        self._series = series

    def collect(self):  # type: ignore[no-untyped-def]
        for name in FAMILIES:
            family = CounterMetricFamily(name, "Plain series.", labels=LABELS)
            for n in range(self._series):
                family.add_metric(("bench", f"c{n}", "ns", f"s{n}", "ns", "workload"), n)
            yield family


def best_scrape(collector: Collector) -> tuple[float, int]:
    registry = CollectorRegistry()
    registry.register(collector)
    seconds, size = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        size = len(generate_latest(registry))
        seconds.append(time.perf_counter() - start)
    return min(seconds), size


def main() -> None:
    table = Table(
        title=f"one scrape of callmap metrics (--max-series {DEFAULT_MAX_SERIES:,}),"
        f" best of {REPEATS}"
    )
    for column in ("live edges", "series", "scrape s", "body MB", "plain series s", "share"):
        table.add_column(column, justify="right")
    for size in SIZES:
        follower = Follower(KafkaSettings())
        for edge in edges(size):
            follower.book.apply(Change.of(edge))
        exported = min(size, DEFAULT_MAX_SERIES)
        scrape, body = best_scrape(ServiceGraphCollector(follower, DEFAULT_MAX_SERIES))
        plain, _ = best_scrape(Plain(exported))
        table.add_row(
            f"{size:,}",
            f"{exported:,}",
            f"{scrape:.3f}",
            f"{body / 1e6:.1f}",
            f"{plain:.3f}",
            f"{scrape / plain:.1f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
