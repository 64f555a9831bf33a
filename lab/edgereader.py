"""The map a lab run draws, read from the edges topic as a user's consumer reads it.

One consumer, from the topic's end at start, keeps each edge's latest
announcement of one cluster, and what the lifecycle checks need: which edges
lived, when each expired one expired, and which came ``new`` again without
expiring in between.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from callmap.broker import make_consumer, topic_partitions
from callmap.config import Settings
from callmap.wire import EDGES, Edge, TopicSpec, decode
from lab.compare import endpoint_text
from lab.truth import ExpectedEdge


class EdgeReader:
    """The current map of one cluster, read from the edges topic by one consumer.

    Start it before the run's components publish: only the edges after that
    point count. ``async with`` starts it and stops it.
    """

    def __init__(self, settings: Settings, cluster: str | None, topic: TopicSpec = EDGES) -> None:
        """``cluster``: keep only its edges (None: every edge, as on a hub's global topic)."""
        self._settings = settings
        self._cluster = cluster
        self._topic = topic
        self.edges: dict[str, Edge] = {}
        """Each edge's latest announcement, by ``edge_id``."""
        self.seen: dict[str, Edge] = {}
        """Each edge's latest announcement while it lived: the run's whole map."""
        self.expired_at: dict[str, float] = {}
        """When each edge that is expired now was announced so (this machine's clock)."""
        self.new_again: set[str] = set()
        """Edges announced ``new`` again without being ``expired`` in between."""
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Open the consumer where the topic ends now: this run's edges come after."""
        partitions = await topic_partitions(self._settings.kafka, [self._topic.name])
        consumer = make_consumer(self._settings.kafka)
        await consumer.start()
        try:
            consumer.assign(partitions)
            for tp, offset in (await consumer.end_offsets(partitions)).items():
                consumer.seek(tp, offset)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Close the consumer (again is harmless); the edges read stay."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> EdgeReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def poll(self, seconds: float) -> bool:
        """Read for ``seconds``; True if the map changed: an edge came or went, or
        showed a TCP or UDP port it did not show before."""
        if self._consumer is None:
            raise RuntimeError("EdgeReader.poll() before start()")
        changed = False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for messages in (await self._consumer.getmany(timeout_ms=300)).values():
                for message in messages:
                    edge = decode(self._topic, message.value)
                    if not isinstance(edge, Edge):
                        continue
                    if self._cluster is None or edge.cluster == self._cluster:
                        self._lived(edge)
                        changed = _changes(self.edges.get(edge.edge_id), edge) or changed
                        self.edges[edge.edge_id] = edge
        return changed

    def _lived(self, edge: Edge) -> None:
        if edge.event == "expired":
            self.expired_at.setdefault(edge.edge_id, time.time())
            return
        known = edge.edge_id in self.seen and edge.edge_id not in self.expired_at
        if edge.event == "new" and known:
            self.new_again.add(edge.edge_id)
        self.expired_at.pop(edge.edge_id, None)
        self.seen[edge.edge_id] = edge

    def pair(self, edge_id: str) -> ExpectedEdge:
        edge = self.seen[edge_id]
        return ExpectedEdge(endpoint_text(edge.client), endpoint_text(edge.server))

    def with_round_trips(self) -> list[ExpectedEdge]:
        """The run's edges whose health (since ``new``) counted round-trip times."""
        return [
            self.pair(edge_id)
            for edge_id, edge in self.seen.items()
            if (health := edge.health_total) is not None
            and health.rtt is not None
            and health.rtt.samples > 0
        ]


def _changes(old: Edge | None, new: Edge) -> bool:
    """Whether ``new`` changes the map ``old`` was part of (a refresh alone does not)."""
    if old is None or (old.event == "expired") != (new.event == "expired"):
        return True
    return set(new.ports) != set(old.ports) or set(new.udp_ports) != set(old.udp_ports)
