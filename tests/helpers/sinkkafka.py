"""Kafka helpers of the sink tests: a fresh edges topic per test, and the runner.

Each test gets topics of its own (named ``test.sinks.edges.<id>``, with the
edges topic's settings), so it reads exactly what it produced. Crashes are
played for real: a runner reads and flushes, then stops *without* committing,
as a killed process would, and a second runner in the same group replays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from callmap.broker import ensure_topics, make_producer
from callmap.config import Settings
from callmap.errors import PermanentError
from callmap.wire import DLQ, EDGES, Edge, TopicSpec, encode, message_key
from sinks.changes import Change
from sinks.service.destination import Sink
from sinks.service.runner import RunnerOptions, SinkRunner

FAST = {"flush_interval": 0.2, "initial_backoff": 0.05, "max_backoff": 0.3}


@dataclass
class EdgesTopic:
    settings: Settings
    spec: TopicSpec
    dlq: TopicSpec

    async def produce(self, items: Sequence[Change | Edge | tuple[bytes, bytes]]) -> None:
        """Edges, tombstones (Change without edge) or raw (key, value) pairs, in order."""
        producer = make_producer(self.settings.kafka)
        await producer.start()
        try:
            for item in items:
                if isinstance(item, Edge):
                    item = Change.of(item)
                if isinstance(item, Change):
                    value = encode(item.edge) if item.edge is not None else None
                    await producer.send(self.spec.name, value, key=item.edge_id.encode())
                else:
                    await producer.send(self.spec.name, item[1], key=item[0])
            await producer.flush()
        finally:
            await producer.stop()

    def runner(
        self,
        sink: Sink,
        group: str,
        clusters: frozenset[str] = frozenset(),
        **options: float | int,
    ) -> SinkRunner:
        settings = {**FAST, **options}
        return SinkRunner(
            self.settings.kafka,
            sink,
            RunnerOptions(
                group_id=group,
                topic=self.spec,
                dead_letters=self.dlq,
                clusters=clusters,
                **settings,  # type: ignore[arg-type]
            ),
        )

    async def run_to_end(
        self,
        sink: Sink,
        group: str,
        timeout: float = 60,
        clusters: frozenset[str] = frozenset(),
    ) -> SinkRunner:
        """Run ``sink`` until it has written and committed everything on the topic."""
        runner = self.runner(sink, group, clusters)
        await runner.start()
        try:
            await asyncio.wait_for(runner.run(until_caught_up=True), timeout)
        finally:
            await runner.close()
        return runner

    async def crash_after_flush(
        self, sink: Sink, group: str, records: int, batch_size: int = 10_000
    ) -> None:
        """Read ``records`` messages (or more), flush them, and die before the commit."""
        runner = self.runner(sink, group, batch_size=batch_size)
        await runner.start()
        deadline = time.monotonic() + 30
        while sink.stats.received < records:
            assert time.monotonic() < deadline, f"read {sink.stats.received} of {records}"
            await runner.poll(0.5)
        await runner.flush()
        await runner.close(commit=False)


async def create_topics(settings: Settings, specs: Sequence[TopicSpec]) -> None:
    """ensure_topics, tolerating a new topic's metadata not having spread yet.

    (callmap.broker.ensure_topics describes the topics right after creating
    them, and the broker may answer "unknown topic" for a moment.)
    """
    for attempt in range(50):
        try:
            await ensure_topics(settings.kafka, settings.topics, specs)
            return
        except PermanentError as exc:
            if "does not exist" not in str(exc) or attempt == 49:
                raise
            await asyncio.sleep(0.1)


async def publish(
    settings: Settings,
    records: Sequence[Any],
    topic: str = EDGES.name,
    key: Callable[[Any], bytes] = message_key,
    tombstones: Sequence[bytes] = (),
) -> None:
    """``records`` on ``topic`` (the edges topic unless told), keyed by ``key``, then a
    tombstone for each key of ``tombstones``."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for record in records:
            await producer.send(topic, encode(record), key=key(record))
        for gone in tombstones:
            await producer.send(topic, None, key=gone)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
async def edges_topic(settings: Settings) -> AsyncIterator[EdgesTopic]:
    suffix = uuid.uuid4().hex[:10]
    spec = dataclasses.replace(EDGES, name=f"test.sinks.edges.{suffix}")
    dlq = dataclasses.replace(DLQ, name=f"test.sinks.dlq.{suffix}")
    await create_topics(settings, [spec, dlq])
    yield EdgesTopic(settings, spec, dlq)
