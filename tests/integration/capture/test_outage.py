"""Broker outage: capture keeps queueing; nothing is lost within the outbox
bound, and what overflows it is dropped oldest-first and counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from helpers.kafkakit import stoppable_broker

from callmap.broker import ensure_topics, make_consumer, read_to_end
from callmap.counters import Counters, StageCounters
from callmap.wire import (
    DNS,
    STATS,
    CaptureStats,
    DnsAnswer,
    DnsAnswerBatch,
    decode,
    encode,
    encode_batches,
)
from capture.outbox import Outbox, Outgoing
from capture.publisher import Publisher

pytestmark = pytest.mark.kafka


def _batch(n: int) -> Outgoing:
    answer = DnsAnswer(
        cluster="test",
        node="outage",
        ts=float(n),
        client_ip="10.0.0.1",
        server_ip="10.0.0.2",
        transport="udp",
        qname=f"q{n}.example.org",
        qtype="A",
        answers=("192.0.2.1",),
        ttl=5,
    )
    (message,) = encode_batches(DnsAnswerBatch, cluster="test", node="outage", records=[answer])
    return Outgoing(DNS.name, b"outage", message.value, message.records)


async def _qnames(settings, expected: int) -> list[str]:  # type: ignore[no-untyped-def]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(DNS.name, 0)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        names: list[str] = []
        deadline = time.monotonic() + 30
        while len(set(names)) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                names += [r.qname for m in messages for r in decode(DNS, m.value).records]  # type: ignore[attr-defined]
        return names
    finally:
        await consumer.stop()


async def _stats(settings) -> list[CaptureStats]:  # type: ignore[no-untyped-def]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        found = []
        async for message in read_to_end(consumer, [TopicPartition(STATS.name, 0)]):
            record = decode(STATS, message.value)
            assert isinstance(record, CaptureStats)
            found.append(record)
        return found
    finally:
        await consumer.stop()


async def test_an_outage_loses_nothing_within_the_bound_and_counts_what_overflows(
    tmp_path: Path,
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 1) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics, [DNS])
        one = _batch(10).size  # every message below has a two-digit number: the same size
        outbox = Outbox(max_bytes=40 * one)
        counters = StageCounters()
        publisher = Publisher(settings.kafka, outbox, counters, send_timeout=3, max_backoff=1)
        sender = asyncio.create_task(publisher.run())

        for n in range(10):  # while the broker is up
            publisher.submit(_batch(n))
        assert await publisher.drain(20)

        await asyncio.to_thread(broker.stop)
        for n in range(10, 40):  # the outage: fits the outbox
            publisher.submit(_batch(n))
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        assert len(outbox) >= 29 and not publisher.connected
        await asyncio.to_thread(broker.start)
        assert await publisher.drain(60), f"{len(outbox)} messages still queued"
        assert set(await _qnames(settings, 40)) == {f"q{n}.example.org" for n in range(40)}
        assert counters.dropped.get("buffer_overflow", 0) == 0

        await asyncio.to_thread(broker.stop)
        for n in range(40, 100):  # a longer outage than the outbox holds
            publisher.submit(_batch(n))
        await asyncio.to_thread(broker.start)
        assert await publisher.drain(60)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

        delivered = set(await _qnames(settings, 80))
        lost = {f"q{n}.example.org" for n in range(40, 100)} - delivered
        assert counters.dropped["buffer_overflow"] == len(lost) == 20
        assert lost == {f"q{n}.example.org" for n in range(40, 60)}  # the oldest went first
        assert counters.emitted >= 80


async def test_stats_outlive_an_outage_on_their_own_lane_and_each_record_counts_once(
    tmp_path: Path,
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 1) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics, [DNS, STATS])
        outbox = Outbox(max_bytes=10 * _batch(10).size)
        counters = Counters()
        stage = counters.stage("publish")
        publisher = Publisher(settings.kafka, outbox, stage, send_timeout=3, max_backoff=1)
        sender = asyncio.create_task(publisher.run())
        await asyncio.to_thread(broker.stop)
        for seq in range(1, 4):  # an outage longer than the outbox holds
            for n in range(seq * 10, seq * 10 + 10):
                publisher.submit(_batch(n))
            record = CaptureStats(
                cluster="test",
                node="outage",
                ts=float(seq),
                interval=1.0,
                boot_id="boot",
                seq=seq,
                totals=counters.running(),
            )
            publisher.submit_stats(Outgoing(STATS.name, b"outage", encode(record), 1))
            await asyncio.sleep(0.5)
        await asyncio.to_thread(broker.start)
        assert await publisher.drain(60)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        sent = await _stats(settings)
    assert [s.seq for s in sent] == [3]  # only the latest waited, and it was sent
    (last,) = sent
    assert last.totals["publish"].dropped == {"buffer_overflow": 20}
    assert stage.seen == 30 == stage.emitted + sum(stage.dropped.values())
