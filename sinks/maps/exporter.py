"""``callmap metrics``: the map as Prometheus series per edge, for Grafana's service graph.

The exporter follows the compacted edges topic (``--global``: the hub's
global edges) from its beginning, with no consumer group: it commits
nothing, and a restart reads the topic again, as ``callmap list`` does.
Every message updates the current state of its edge (:class:`EdgeBook`);
each scrape turns the live edges into series within the bound
(:mod:`sinks.maps.formats.servicegraph`). A message that does not decode is
counted (``callmap_metrics_records_rejected_total``) and logged, never fatal.
``/healthz`` fails until the exporter has read the topic up to where it
ended at start, so a scrape never shows half a map as the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callmap.backoff import retrying
from callmap.broker import make_consumer, map_kafka_errors, topic_partitions
from callmap.config import KafkaSettings
from callmap.errors import WireDecodeError
from callmap.metrics import serve_metrics
from callmap.signals import on_stop_signals
from callmap.wire import EDGES, GLOBAL_EDGES, TopicSpec
from sinks.changes import read_change
from sinks.endpoints import touches
from sinks.lifecycle import EdgeBook
from sinks.maps.formats.servicegraph import LABELS, service_graph
from sinks.maps.settings import MetricsSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Follower:
    """The current state of every edge on the topic, kept up to date."""

    kafka: KafkaSettings
    topic: TopicSpec = EDGES
    clusters: frozenset[str] = frozenset()
    book: EdgeBook = field(default_factory=EdgeBook)
    rejected: int = 0
    caught_up: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        """Read the topic from its beginning, then follow it until ``stop`` is set."""
        partitions = await retrying(
            lambda: topic_partitions(self.kafka, [self.topic.name]), f"find {self.topic.name}"
        )
        consumer = make_consumer(self.kafka)
        with map_kafka_errors(f"read {self.topic.name}"):
            await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for messages in batch.values():
                    for message in messages:
                        self.take(message.key, message.value, message.offset)
                if not self.caught_up:
                    self.caught_up = await self._reached(consumer, ends)
        finally:
            await consumer.stop()

    async def _reached(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        """Whether every partition is read up to ``ends`` (where it ended at start)."""
        for partition, end in ends.items():
            if await consumer.position(partition) < end:
                return False
        log.info("read %s to where it ended at start: %d edges", self.topic.name, len(self.book))
        return True

    def take(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Apply one message of the topic (a tombstone when ``value`` is None)."""
        try:
            change = read_change(self.topic, key, value)
        except WireDecodeError as exc:
            self.rejected += 1
            log.warning("skipping %s@%d: %s", self.topic.name, offset, exc)
            return
        if change.edge is None or not self.clusters or touches(change.edge, self.clusters):
            self.book.apply(change)


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
