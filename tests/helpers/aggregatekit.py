"""Running ``callmap aggregate`` workers in a test and reading what they publish."""

from __future__ import annotations

import asyncio
import time

from aggregate.clusterset import clusterset_from_groups
from aggregate.ledger import LedgerSettings
from aggregate.worker import AggregateOptions, AggregateWorker
from callmap.broker import make_consumer, read_to_end, start_producer, topic_partitions
from callmap.config import Settings
from callmap.counters import Counters
from callmap.wire import GLOBAL_EDGES, Edge, Endpoint, Record, decode, encode, message_key


def named(endpoint: Endpoint) -> str:
    if endpoint.type == "external":
        return f"external:{endpoint.dns_name}"
    if endpoint.type == "ip":
        return f"{endpoint.cluster}/ip:{endpoint.ip}"
    return f"{endpoint.cluster}/{endpoint.namespace}/{endpoint.name}"


async def publish(settings: Settings, records: list[tuple[str, Record]]) -> None:
    producer = await start_producer(settings.kafka, 30.0)
    try:
        for topic, record in records:
            await producer.send_and_wait(topic, encode(record), key=message_key(record))
    finally:
        await producer.stop()


async def global_topic(settings: Settings) -> list[Edge]:
    """Every message of the global topic, in order per partition."""
    partitions = await topic_partitions(settings.kafka, [GLOBAL_EDGES.name])
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        found = []
        async for message in read_to_end(consumer, partitions):
            record = decode(GLOBAL_EDGES, message.value)  # type: ignore[arg-type]
            assert isinstance(record, Edge)
            found.append(record)
        return found
    finally:
        await consumer.stop()


def current(messages: list[Edge]) -> set[tuple[str, str]]:
    latest = {m.edge_id: m for m in messages}
    return {(named(e.client), named(e.server)) for e in latest.values() if e.event != "expired"}


async def eventually_map(
    settings: Settings, truth: set[tuple[str, str]], timeout: float = 60
) -> list[Edge]:
    deadline = time.monotonic() + timeout
    while True:
        messages = await global_topic(settings)
        if current(messages) == truth or time.monotonic() > deadline:
            found = current(messages)
            assert found == truth, (sorted(found - truth), sorted(truth - found))
            return messages
        await asyncio.sleep(0.5)


class Running:
    """One aggregator worker in this event loop."""

    def __init__(
        self,
        settings: Settings,
        peers: list[list[str]] | None = None,
        ttl: float = 86400.0,
        grace: float = 60.0,
    ) -> None:
        options = AggregateOptions(
            ledger=LedgerSettings(refresh_interval=3600.0, ttl=ttl),
            expiry_interval=0.5,
            tick_interval=0.5,
            discover_interval=1.0,
            reresolve_interval=0.5,
            grace=grace,
        )
        self.worker = AggregateWorker(
            settings.kafka,
            settings.topics,
            clusterset_from_groups(peers or [["east", "west"]]),
            options,
            Counters(),
        )
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.worker.run(self.stop))

    async def ready(self) -> None:
        await asyncio.wait_for(self.worker.ready.wait(), 60)

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
