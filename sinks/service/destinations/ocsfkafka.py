"""OCSF events to a Kafka topic that SIEM pipelines ingest (``sink ocsf --topic``).

The topic is the SIEM pipeline's, named by the operator; callmap does not
create it. Each message is one OCSF Network Activity event (see
:mod:`sinks.service.formats.ocsf`), keyed by ``edge_id`` so that an edge's events stay in one
partition, in lifecycle order; ``metadata.uid`` (the event key) lets a
pipeline drop a duplicate, and the offset journal skips replays before they
are sent. A flush sends every event and waits for the acknowledgements of all
replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import UnknownTopicOrPartitionError

from callmap.broker import map_kafka_errors, start_producer, stop_quietly
from callmap.config import KafkaSettings
from callmap.errors import PermanentError, TemporaryError
from sinks.changes import Change
from sinks.service.destination import Sink
from sinks.service.formats.ocsf import ocsf_json
from sinks.service.journal import OffsetJournal
from sinks.service.stats import SinkStats


class OcsfKafkaSink(Sink):
    """Produces one OCSF event per edge event to ``topic``."""

    kind = "ocsf"

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        journal: OffsetJournal | None = None,
        timeout: float = 30.0,
        stats: SinkStats | None = None,
    ) -> None:
        super().__init__(stats, journal if journal is not None else OffsetJournal())
        self.kafka = kafka
        self.topic = topic
        self.timeout = timeout
        self._producer: Any = None

    async def open(self) -> None:
        await super().open()
        if self._producer is None:
            try:
                with map_kafka_errors("connect the OCSF producer"):
                    self._producer = await start_producer(
                        self.kafka, self.timeout, request_timeout_ms=int(self.timeout * 1000)
                    )
            except (TemporaryError, TimeoutError) as exc:
                raise TemporaryError(f"connect the OCSF producer: {exc}") from exc

    async def _write(self, batch: Sequence[Change]) -> int:
        await self.open()
        sends = []
        for change in batch:
            if change.edge is None:
                self.stats.skip("tombstone")
                continue
            sends.append((change.edge_id.encode(), ocsf_json(change.edge)))
        try:
            with map_kafka_errors(f"send OCSF events to {self.topic}"):
                futures = [
                    await self._producer.send(self.topic, value, key=key) for key, value in sends
                ]
                async with asyncio.timeout(self.timeout):
                    await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise TemporaryError(f"send OCSF events to {self.topic}: timed out") from exc
        except PermanentError as exc:
            if isinstance(exc.__cause__, UnknownTopicOrPartitionError):
                # The SIEM pipeline owns the topic; until it creates it, wait as for an outage.
                raise TemporaryError(f"topic {self.topic} does not exist (yet)") from exc
            raise
        return len(sends)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        await stop_quietly(producer, "the OCSF producer")
