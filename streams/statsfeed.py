"""Every worker's reading of the capture agents' stats, and the per-node loss it
exposes to Prometheus.

Each worker reads all partitions of ``callmap.stats.v1`` (no consumer group),
starting :data:`LOOKBACK` seconds back, and folds the records into a
:class:`streams.nodeloss.NodeLoss`. The figures are exposed once that backlog
is read, so a restarted worker never shows a figure that is still growing
from its backlog (which an alert would take for new loss). Every worker
exposes the same figures: take the ``max`` over workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callmap.broker import make_consumer, topic_partitions
from callmap.config import KafkaSettings
from callmap.errors import WireDecodeError
from callmap.wire import STATS, CaptureStats, decode_as
from streams.identityfeed import DeadLetter
from streams.nodeloss import NodeLoss

log = logging.getLogger(__name__)

LOST_RECORDS = "callmap_capture_lost_records"
STATS_AGE = "callmap_capture_stats_age_seconds"

LOOKBACK = 3600.0
"""Seconds of stats a worker reads at start: every agent sends totals every
``--stats-interval``, so an hour holds the latest totals of every boot that
lived in it."""


class StatsFeed:
    """Applies the stats topic to :class:`NodeLoss`, forever."""

    def __init__(
        self,
        kafka: KafkaSettings,
        loss: NodeLoss,
        dead_letter: DeadLetter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self.loss = loss
        self._dead_letter = dead_letter
        self._clock = clock
        self.ready = asyncio.Event()

    async def run(self) -> None:
        partitions = await topic_partitions(self._kafka, [STATS.name])
        consumer = make_consumer(self._kafka, client_id=f"{self._kafka.client_id}-stats")
        await consumer.start()
        try:
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await self._seek_back(consumer, partitions)
            left = {tp for tp in partitions if ends[tp] > 0}
            while True:
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
                if not left and not self.ready.is_set():
                    log.info("capture stats loaded: %d nodes", len(self.loss))
                    self.ready.set()
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        await self._apply(message)
        finally:
            await consumer.stop()

    async def _seek_back(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        since = int((self._clock() - LOOKBACK) * 1000)
        offsets = await consumer.offsets_for_times({tp: since for tp in partitions})
        for tp in partitions:
            found = offsets.get(tp)
            if found is None:  # nothing that recent: start at the end
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)

    async def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        topic, partition, offset = message.topic, message.partition, message.offset
        key, value = message.key, message.value
        try:
            record = decode_as(CaptureStats, value or b"", topic=topic)
        except WireDecodeError as error:  # the dead letter says so in the log
            await self._dead_letter(topic, error, partition, offset, key, value or b"")
            return
        self.loss.add(record)


class NodeLossCollector(Collector):
    """``callmap_capture_lost_records{cluster,node,reason}`` and
    ``callmap_capture_stats_age_seconds{cluster,node}``, once the feed is ready."""

    def __init__(self, feed: StatsFeed, clock: Callable[[], float] = time.time) -> None:
        self._feed = feed
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        if not self._feed.ready.is_set():
            return
        lost = GaugeMetricFamily(
            LOST_RECORDS,
            "Records a node's capture lost (kernel drops, outbox overflow or age), summed "
            "over its agent processes.",
            labels=["cluster", "node", "reason"],
        )
        age = GaugeMetricFamily(
            STATS_AGE,
            "Seconds since a node's capture last sent its stats.",
            labels=["cluster", "node"],
        )
        now, aged = self._clock(), set()
        for figure in self._feed.loss.figures():
            lost.add_metric([figure.cluster, figure.node, figure.reason], figure.records)
            if (figure.cluster, figure.node) not in aged:
                aged.add((figure.cluster, figure.node))
                age.add_metric([figure.cluster, figure.node], max(0.0, now - figure.last_stats))
        yield lost
        yield age
