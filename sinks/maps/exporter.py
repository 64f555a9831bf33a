"""``callmap metrics``: the map as Prometheus series per edge, for Grafana's service graph.

The exporter follows the edges topic (:class:`~sinks.maps.follower.Follower`:
from its beginning, no consumer group, ``--global`` for the hub's global
edges); each scrape turns the live edges into series within the bound
(:mod:`sinks.maps.formats.servicegraph`). A message that does not decode is
counted (``callmap_metrics_records_rejected_total``) and logged, never fatal.
``/healthz`` fails until the exporter has read the topic up to where it
ended at start, so a scrape never shows half a map as the map.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callmap.metrics import serve_metrics
from callmap.signals import on_stop_signals
from callmap.wire import EDGES, GLOBAL_EDGES
from sinks.maps.follower import Follower
from sinks.maps.formats.servicegraph import LABELS, service_graph
from sinks.maps.settings import MetricsSettings


class ServiceGraphCollector(Collector):
    """Renders the follower's live edges at each scrape."""

    def __init__(self, follower: Follower, max_series: int) -> None:
        self._follower = follower
        self._max = max_series

    def collect(self) -> Iterator[Metric]:
        graph = service_graph(self._follower.book.edges(), self._max)
        sightings = CounterMetricFamily(
            "callmap_edge_sightings",
            "Times capture saw the call (DNS answers and socket observations), per edge.",
            labels=LABELS,
        )
        first = GaugeMetricFamily(
            "callmap_edge_first_seen_timestamp_seconds",
            "When the call was first seen.",
            labels=LABELS,
        )
        last = GaugeMetricFamily(
            "callmap_edge_last_seen_timestamp_seconds",
            "When the call was last seen.",
            labels=LABELS,
        )
        for one in graph.edges:
            sightings.add_metric(one.labels, one.sightings)
            first.add_metric(one.labels, one.first_seen)
            last.add_metric(one.labels, one.last_seen)
        requests = CounterMetricFamily(
            "traces_service_graph_request",
            "Sightings per client and server, named as Grafana's service graph reads them.",
            labels=("client", "server", "connection_type"),
        )
        for pair, count in sorted(graph.requests.items()):
            requests.add_metric(pair, count)
        edges = GaugeMetricFamily(
            "callmap_metrics_edges",
            "Live edges, by cluster and server kind.",
            labels=("cluster", "kind"),
        )
        for kind, count in sorted(graph.counts.items()):
            edges.add_metric(kind, count)
        dropped = GaugeMetricFamily(
            "callmap_metrics_series_dropped",
            "Edge series left out at this scrape: over --max-series.",
            value=graph.dropped,
        )
        rejected = CounterMetricFamily(
            "callmap_metrics_records_rejected",
            "Messages of the edges topic that did not decode.",
            value=self._follower.rejected,
        )
        yield from (sightings, first, last, requests, edges, dropped, rejected)


async def export(settings: MetricsSettings) -> None:
    """Follow the topic and serve its series until SIGTERM or SIGINT."""
    follower = Follower(
        settings.kafka, GLOBAL_EDGES if settings.global_edges else EDGES, settings.clusters
    )
    serve_metrics(
        settings.port,
        ServiceGraphCollector(follower, settings.max_series),
        settings.address,
        health=lambda: [] if follower.caught_up else ["not caught up with the edges topic"],
    )
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    await follower.run(stop)
