"""A node's capture publishing DNS answers at a steady rate while something fails, and
what reached Kafka, counted by query name (every answer has its own)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition

from callmap.broker import ensure_topics, make_consumer, read_to_end
from callmap.config import Settings
from callmap.counters import StageCounters
from callmap.wire import DNS, DnsAnswer, DnsAnswerBatch, decode, encode_batches
from capture.outbox import Outbox, Outgoing
from capture.publisher import Publisher
from capture.sniffer import in_netns
from devtools.kafka import DevBroker
from helpers.kafkakit import stoppable_broker
from helpers.netcut import Link, linked_namespace

WINDOW = 0.25
"""Seconds of answers in one submission, as capture's batcher sends them."""
DEFAULT_OUTBOX_MIB = 64
"""capture's default ``--outbox-mib``."""


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


def expected(sent: int) -> set[str]:
    """The query names of the first ``sent`` answers."""
    return {f"svc-{n}.shop.svc.cluster.local" for n in range(sent)}


@dataclass(frozen=True)
class Published:
    """What one run of the rated load sent, and how it ended."""

    sent: int
    drained: bool
    recovery: float | None
    """Seconds from the last submission until the outbox was empty."""
    dropped: int
    """Records the outbox counted as dropped."""
    most_waiting: int
    """The most messages the outbox held at once: the fault's mark (a message is
    :data:`WINDOW` seconds of answers)."""


async def steady_load(
    settings: Settings, rate: int, seconds: float, outbox_mib: int = DEFAULT_OUTBOX_MIB
) -> Published:
    """Capture's outbox (of ``outbox_mib``) and publisher fed ``rate`` answers a second
    for ``seconds``, then drained (up to 180 s)."""
    counters = StageCounters()
    outbox = Outbox(max_bytes=outbox_mib * 1024 * 1024)
    publisher = Publisher(settings.kafka, outbox, counters, send_timeout=3, max_backoff=2)
    sender = asyncio.create_task(publisher.run())
    per_window, sent, most_waiting = int(rate * WINDOW), 0, 0
    started = time.monotonic()
    try:
        while time.monotonic() < started + seconds:
            for message in answers(sent, per_window):
                publisher.submit(message)
            sent += per_window
            most_waiting = max(most_waiting, len(outbox))
            await asyncio.sleep(max(0.0, started + (sent / rate) - time.monotonic()))
        published = time.monotonic()
        drained = await publisher.drain(180)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    recovery = time.monotonic() - published if drained else None
    return Published(sent, drained, recovery, sum(counters.dropped.values()), most_waiting)


@dataclass(frozen=True)
class Timing:
    """Seconds of steady load before the fault, of the fault, and after it."""

    before: float
    outage: float
    after: float

    @property
    def total(self) -> float:
        return self.before + self.outage + self.after


async def through_link_cut(
    directory: Path, rate: int, timing: Timing
) -> tuple[Published, Counter[str]]:
    """A publisher in a network namespace of its own (a thread that entered it runs its
    event loop, so every socket it opens is there) at ``rate``, the broker on the host's
    end of the namespace's link, and the link cut for ``timing.outage``; what it sent,
    and each query name's count on the topic."""
    with linked_namespace() as link:
        async with stoppable_broker(directory, 1, host=link.host_ip) as (_, settings):
            await ensure_topics(settings.kafka, settings.topics, [DNS])
            fault = asyncio.create_task(link_cut(link, timing.before, timing.outage))
            run = await asyncio.to_thread(
                in_netns,
                link.namespace,
                lambda: asyncio.run(steady_load(settings, rate, timing.total)),
            )
            await fault
            return run, await delivered(settings)


async def through_full_disk(
    directory: Path, rate: int, timing: Timing
) -> tuple[Published, Counter[str], bool]:
    """The broker's data on a small disk, filled for ``timing.outage`` while a publisher
    sends at ``rate``; what it sent, each query name's count on the topic, and whether
    the broker had stopped (the fault's premise)."""
    with small_disk(directory / "data") as data:
        async with stoppable_broker(directory, 1) as (broker, settings):
            await ensure_topics(settings.kafka, settings.topics, [DNS])
            fault = asyncio.create_task(disk_full(broker, data, timing.before, timing.outage))
            run = await steady_load(settings, rate, timing.total)
            stopped = await fault
            return run, await delivered(settings), stopped


async def broker_away(broker: DevBroker, before: float, outage: float) -> None:
    """Stop the broker after ``before`` seconds, start it again ``outage`` later."""
    await asyncio.sleep(before)
    await asyncio.to_thread(broker.stop, 0.0)
    await asyncio.sleep(outage)
    await asyncio.to_thread(broker.start)


async def link_cut(link: Link, before: float, outage: float) -> None:
    """Cut ``link`` after ``before`` seconds, mend it ``outage`` later."""
    await asyncio.sleep(before)
    await asyncio.to_thread(link.cut)
    await asyncio.sleep(outage)
    await asyncio.to_thread(link.mend)


async def disk_full(broker: DevBroker, data: Path, before: float, outage: float) -> bool:
    """Fill the broker's disk after ``before`` seconds; ``outage`` later free it and start
    the broker again, as an operator would. True if the broker had stopped."""
    await asyncio.sleep(before)
    filler = await asyncio.to_thread(fill, data)
    await asyncio.sleep(outage)
    stopped = not broker.status().running
    filler.unlink()
    await asyncio.to_thread(broker.start)
    return stopped


@contextmanager
def small_disk(directory: Path, size: str = "256m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``directory``: a disk the test can fill."""
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its disk is full; the file."""
    filler = directory / "filler"
    chunk = bytes(1024 * 1024)
    with filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            out.write(chunk)
            out.flush()
    return filler
