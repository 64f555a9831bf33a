"""``callmap aggregate``: merge many clusters' edges at a hub into ``callmap.global-edges.v1``.

Run it against the hub Kafka (``CALLMAP_KAFKA_BOOTSTRAP``), where MirrorMaker 2
mirrors each cluster's topics (``east.callmap.edges.v1``, ...) or where the
clusters write the shared topics themselves. Start several with the same
``--group`` to share the clusters between them. docs/multicluster.md says how
it works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import click
import yaml
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregate.clusterset import (
    DEFAULT_CLUSTERSET_DOMAIN,
    ClusterSet,
    ClusterSetError,
    clusterset_from_document,
    clusterset_from_groups,
)
from aggregate.health import ClusterHealth
from aggregate.ledger import LedgerSettings
from aggregate.worker import DEFAULT_GROUP, AggregateOptions, AggregateWorker
from callmap.config import load_settings
from callmap.counters import Counters
from callmap.errors import CallmapError
from callmap.metrics import CountersCollector, serve_metrics
from callmap.optiongroups import metrics_port_option, start_timeout_option
from callmap.signals import on_stop_signals
from streams.edges import DEFAULT_REFRESH_INTERVAL, DEFAULT_TTL


@click.command()
@click.option(
    "--clusterset",
    "clusterset_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML with a 'clusters:' list of {name, peers, overlap_with} (a lab topology works).",
)
@click.option(
    "--peers",
    multiple=True,
    metavar="A,B,...",
    help="Clusters that reach each other's pod and service IPs (repeatable).",
)
@click.option(
    "--clusterset-domain",
    default=DEFAULT_CLUSTERSET_DOMAIN,
    show_default=True,
    help="The MCS domain of <svc>.<ns>.svc.<domain> names.",
)
@click.option(
    "--group", default=DEFAULT_GROUP, show_default=True, help="Workers sharing the clusters."
)
@click.option(
    "--refresh-interval",
    default=DEFAULT_REFRESH_INTERVAL,
    show_default=True,
    help="Seconds between refreshes of an edge seen again.",
)
@click.option(
    "--ttl",
    default=DEFAULT_TTL,
    show_default=True,
    help="Seconds a cluster may say nothing of an edge before it expires "
    "(>= the clusters' --refresh-interval plus their TTL).",
)
@click.option(
    "--grace",
    default=60.0,
    show_default=True,
    help="Seconds a new edge the hub cannot name yet (an address of a cluster mirrored in "
    "late) waits for identities before it is announced with the raw address.",
)
@click.option("--tick-interval", default=5.0, show_default=True, help="Seconds between ticks.")
@start_timeout_option()
@metrics_port_option(9812)
def aggregate(
    clusterset_file: Path | None,
    peers: tuple[str, ...],
    clusterset_domain: str,
    group: str,
    refresh_interval: float,
    ttl: float,
    grace: float,
    tick_interval: float,
    start_timeout: float,
    metrics_port: int,
) -> None:
    """Merge many clusters' edges at a hub into one map where every endpoint names its cluster."""
    try:
        settings = load_settings()
        clusterset = _clusterset(clusterset_file, peers, clusterset_domain)
    except CallmapError as exc:
        raise click.ClickException(str(exc)) from exc
    options = AggregateOptions(
        group_id=group,
        ledger=LedgerSettings(refresh_interval=refresh_interval, ttl=ttl),
        tick_interval=tick_interval,
        grace=grace,
        start_timeout=start_timeout,
    )
    counters = Counters()
    worker = AggregateWorker(settings.kafka, settings.topics, clusterset, options, counters)
    gauges = {
        "edges": ("Global edges this worker owns.", lambda: float(len(worker.ledger.edges))),
        "identities": ("Identities of every cluster.", lambda: float(len(worker.identities))),
        "waiting_edges": (
            "New edges waiting for identities to name them.",
            lambda: float(worker.waiting()),
        ),
    }
    serve_metrics(
        metrics_port,
        _Both(CountersCollector("aggregate", counters, gauges), ClusterCollector(worker)),
    )

    async def main() -> None:
        stop = asyncio.Event()
        on_stop_signals(stop.set)
        await worker.run(stop)

    asyncio.run(main())


def _clusterset(file: Path | None, peers: tuple[str, ...], domain: str) -> ClusterSet:
    if file is not None:
        if peers:
            raise ClusterSetError("give --clusterset or --peers, not both")
        try:
            document = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterSetError(f"cannot read {file}: {exc}") from exc
        if not isinstance(document, dict):
            raise ClusterSetError(f"{file} is not a YAML mapping")
        return clusterset_from_document(document, domain)
    return clusterset_from_groups((group.split(",") for group in peers), domain)


class ClusterCollector(Collector):
    """Per cluster: stale or not, and the age of its last heartbeat."""

    def __init__(self, worker: AggregateWorker) -> None:
        self._health: ClusterHealth = worker.identities.health

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        stale = GaugeMetricFamily(
            "callmap_aggregate_cluster_stale",
            "1 when no heartbeat of the cluster arrived for 3 of its intervals.",
            labels=["cluster"],
        )
        age = GaugeMetricFamily(
            "callmap_aggregate_cluster_heartbeat_age_seconds",
            "Seconds since the cluster's last heartbeat arrived.",
            labels=["cluster"],
        )
        for name, status in sorted(self._health.clusters.items()):
            stale.add_metric([name], 1.0 if status.stale(now, self._health.missed) else 0.0)
            if status.heard_at is not None:
                age.add_metric([name], now - status.heard_at)
        yield from (stale, age)


class _Both(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()
