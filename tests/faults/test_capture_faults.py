"""The broker away for a minute while a node's capture publishes at its rated load:
the outbox holds everything, and all of it reaches Kafka once the broker is back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from helpers.faultruns import FaultRow
from helpers.kafkakit import stoppable_broker

from callmap.broker import ensure_topics, make_consumer, read_to_end
from callmap.config import Settings
from callmap.counters import StageCounters
from callmap.wire import DNS, DnsAnswer, DnsAnswerBatch, decode, encode_batches
from capture.outbox import Outbox, Outgoing
from capture.publisher import Publisher

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

RATE = 4_000  # DNS answers a second from one node
WINDOW = 0.25  # seconds of answers in one submission, as capture's batcher sends them
OUTAGE = 60.0
BEFORE, AFTER = 10.0, 10.0  # seconds of publishing around the outage


def answers(first: int, count: int) -> list[Outgoing]:
    records = [
        DnsAnswer(
            cluster="faults",
            node="node-a",
            ts=time.time(),
            client_ip=f"10.4.{n % 200}.{n % 250 + 1}",
            server_ip="10.96.0.10",
            transport="udp",
            qname=f"svc-{n}.shop.svc.cluster.local",
            qtype="A",
            answers=(f"10.96.{n % 200}.{n % 250 + 1}",),
            ttl=30,
        )
        for n in range(first, first + count)
    ]
    return [
        Outgoing(DNS.name, b"node-a", message.value, message.records)
        for message in encode_batches(
            DnsAnswerBatch, cluster="faults", node="node-a", records=records
        )
    ]


async def delivered(settings: Settings) -> Counter[str]:
    """How often each query name is on the DNS topic."""
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    seen: Counter[str] = Counter()
    try:
        async for message in read_to_end(consumer, [TopicPartition(DNS.name, 0)]):
            batch = decode(DNS, message.value)
            assert isinstance(batch, DnsAnswerBatch)
            seen.update(record.qname for record in batch.records)
    finally:
        await consumer.stop()
    return seen


async def test_the_broker_away_for_a_minute_at_the_rated_load(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 1) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics, [DNS])
        counters = StageCounters()
        publisher = Publisher(settings.kafka, Outbox(), counters, send_timeout=3, max_backoff=2)
        sender = asyncio.create_task(publisher.run())
        per_window, sent = int(RATE * WINDOW), 0
        started = time.monotonic()
        stopped_at = started + BEFORE
        restart_at = stopped_at + OUTAGE
        ends_at = restart_at + AFTER
        broker_down = False
        while time.monotonic() < ends_at:
            for message in answers(sent, per_window):
                publisher.submit(message)
            sent += per_window
            now = time.monotonic()
            if not broker_down and now >= stopped_at:
                await asyncio.to_thread(broker.stop, 0.0)
                broker_down = True
            elif broker_down and now >= restart_at and restart_at > 0:
                await asyncio.to_thread(broker.start)
                restart_at = 0.0
            await asyncio.sleep(max(0.0, started + (sent / RATE) - time.monotonic()))
        published = time.monotonic()
        drained = await publisher.drain(180)
        recovery = time.monotonic() - published if drained else None
        peak = counters.dropped.get("buffer_overflow", 0)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        seen = await delivered(settings)
    expected = {f"svc-{n}.shop.svc.cluster.local" for n in range(sent)}
    lost = expected - set(seen)
    report(
        FaultRow(
            scenario=f"capture: the broker away {OUTAGE:.0f} s (64 MiB outbox)",
            load=f"{RATE:,} DNS answers/s from one node",
            records_in=sent,
            expected=len(expected),
            seen=len(expected & set(seen)),
            lost=len(lost),
            doubled=sum(1 for count in seen.values() if count > 1),
            recovery=recovery,
        )
    )
    assert drained and not lost, f"{len(lost)} answers lost, {peak} counted as dropped"
