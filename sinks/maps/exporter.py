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
from sinks.health import retransmits_known, rtt_of
from sinks.maps.follower import Follower
from sinks.maps.formats.servicegraph import LABELS, EdgeSeries, service_graph
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
        yield from (sightings, first, last, *_health_counters(graph.edges), _rtt(graph.edges))
        yield from (requests, edges, dropped, rejected)


_HEALTH_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("callmap_edge_connections_opened", "opened", "Connections answered (UDP: first seen)."),
    ("callmap_edge_connections_closed", "closed", "Connections that ended after an answer."),
    ("callmap_edge_connects_failed", "failed", "TCP connects never answered: refused, timed out."),
    ("callmap_edge_resets", "resets", "Answered TCP connections that ended with a reset."),
    ("callmap_edge_sent_bytes", "bytes_sent", "Bytes client to server (nodes that count bytes)."),
    ("callmap_edge_received_bytes", "bytes_received", "Bytes server to client (likewise)."),
    ("callmap_edge_retransmits", "retransmits", "TCP segments the client resent (tcp_info)."),
)
"""Per-edge counters of ``health_total``: (family, FlowHealth field, help)."""


def _health_counters(series: list[EdgeSeries]) -> Iterator[Metric]:
    """One counter family per health field, a series for each edge that has the value."""
    for name, field, help_text in _HEALTH_COUNTERS:
        family = CounterMetricFamily(
            name, f"{help_text} Since the edge was new, per edge.", labels=LABELS
        )
        for one in series:
            value = None if one.health is None else getattr(one.health, field)
            if field == "retransmits" and not retransmits_known(one.health):
                value = None  # 0 from a node without tcp_info is no count of none
            if value is not None:
                family.add_metric(one.labels, value)
        yield family


RTT_QUANTILES = (0.5, 0.99)
"""The quantiles of ``callmap_edge_rtt_seconds``."""


def _rtt(series: list[EdgeSeries]) -> Metric:
    """The last window's RTT quantiles of each edge that has RTT samples in it."""
    family = GaugeMetricFamily(
        "callmap_edge_rtt_seconds",
        "Round-trip time of the client's TCP sockets in the edge's last window, per edge.",
        labels=(*LABELS, "quantile"),
    )
    for one in series:
        rtt = rtt_of(one.lately)
        if rtt is not None:
            for q in RTT_QUANTILES:
                family.add_metric((*one.labels, str(q)), rtt.quantile_us(q) / 1e6)
    return family


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
