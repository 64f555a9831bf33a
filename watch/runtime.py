"""What both watchers (Kubernetes and inventory file) run on: output, metrics.

:class:`IdentityOutput` is the publishing half every watcher shares: the
identity tables, the coalescing publisher behind them, and the start of a
term (topics created if missing, the topics' current state read back and
adopted, each retried by :func:`callmap.backoff.retrying`), and the
cluster's heartbeat (:meth:`IdentityOutput.heartbeat`: its id on
``callmap.clusters.v1``, for aggregators); :func:`every` runs a step
periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from callmap.backoff import DEFAULT_START_TIMEOUT, give_up_after, retrying
from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.counters import Counters
from callmap.metrics import CountersCollector
from callmap.wire import CLUSTERS, IDENTITY_TOPICS, ClusterInfo
from watch.identitytable import Change, IdentityTables
from watch.publisher import Publisher
from watch.readback import read_back

log = logging.getLogger(__name__)

T = TypeVar("T")


def stand_in_uid(cluster: str) -> str:
    """A stable id for a cluster known only by its alias (an inventory without one)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"callmap:cluster:{cluster}"))


async def every(seconds: float, step: Callable[[], object]) -> None:
    """Call ``step`` every ``seconds`` until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        step()


class IdentityOutput:
    """The identity tables of one watcher and the publisher they emit into."""

    def __init__(
        self,
        settings: Settings,
        cluster: str,
        retention: float,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.start_timeout = start_timeout
        """Seconds a term keeps trying to reach Kafka; then the fault ends the watcher."""
        self.counters = Counters()
        self.publisher = Publisher(settings.kafka, self.counters.stage("publish"), cluster=cluster)
        self.tables = IdentityTables(retention, self.publisher.submit)

    async def begin_term(self) -> None:
        """Forget everything, fence the previous leader, then adopt what the topics hold
        (creating missing topics).

        Kafka gets ``start_timeout`` seconds for both; then the fault is raised."""
        self.tables.clear()
        self.publisher.discard()
        kafka, topics = self.settings.kafka, self.settings.topics
        specs = (*IDENTITY_TOPICS, CLUSTERS)
        budget = give_up_after(self.start_timeout)
        await retrying(
            lambda: ensure_topics(kafka, topics, specs), "create topics", on_retry=budget
        )
        # Before reading back: starting the producer fences a previous leader, so
        # nothing it still sends can land after what is read here.
        await retrying(self.publisher.connect, "connect to Kafka", on_retry=budget)
        stage = self.counters.stage("readback")
        await retrying(
            lambda: read_back(kafka, self.cluster, self.tables.adopt, stage),
            "read back the identity topics",
            on_retry=budget,
        )

    async def heartbeat(self, uid: str, domain: str, interval: float) -> None:
        """Publish this cluster's :class:`ClusterInfo` now and every ``interval`` seconds,
        until cancelled (the term ends: a watcher that does not lead stays silent)."""
        log.info("cluster %s has id %s; heartbeat every %.0f s", self.cluster, uid, interval)
        while True:
            info = ClusterInfo(
                cluster=self.cluster, uid=uid, domain=domain, ts=time.time(), heartbeat=interval
            )
            self.publisher.submit(Change(CLUSTERS, self.cluster, info))
            self.counters.stage("heartbeat").emitted += 1
            await asyncio.sleep(interval)

    def collector(
        self,
        restarts: Callable[[], Mapping[str, Counter[str]]],
        gauges: dict[str, tuple[str, Callable[[], float]]],
    ) -> Collector:
        sizes: dict[str, tuple[str, Callable[[], float]]] = {
            "pending_changes": ("Identity changes waiting for Kafka.", self._pending),
            "kafka_connected": ("1 while the last send succeeded.", self._connected),
            "pods": ("Pod records held, deleted ones included.", self._pods),
            "services": ("Service records held.", self._services),
            "nodes": ("Node records held.", self._nodes),
        }
        return WatchCollector(self.counters, restarts, {**sizes, **gauges})

    def _pending(self) -> float:
        return float(len(self.publisher))

    def _connected(self) -> float:
        return float(self.publisher.connected)

    def _pods(self) -> float:
        return float(len(self.tables.pods))

    def _services(self) -> float:
        return float(len(self.tables.services))

    def _nodes(self) -> float:
        return float(len(self.tables.nodes))


class WatchCollector(Collector):
    """callmap_watch_* metrics: stage counters, gauges, and watch restarts by reason."""

    def __init__(
        self,
        counters: Counters,
        restarts: Callable[[], Mapping[str, Counter[str]]],
        gauges: dict[str, tuple[str, Callable[[], float]]],
    ) -> None:
        self._stages = CountersCollector("watch", counters, gauges)
        self._restarts = restarts

    def collect(self) -> Iterator[Metric]:
        yield from self._stages.collect()
        family = CounterMetricFamily(
            "callmap_watch_restarts",
            "Watch requests restarted, by resource and reason.",
            labels=["resource", "reason"],
        )
        for resource, reasons in sorted(self._restarts().items()):
            for reason, count in sorted(reasons.items()):
                family.add_metric([resource, reason], count)
        yield family
