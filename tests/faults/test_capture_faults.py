"""The broker away for a minute, the link between capture and the broker cut for a
minute, or the broker's disk full for a minute, while a node's capture publishes
at its rated load: the outbox holds everything, and all of it reaches Kafka once
the broker is reachable again."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from helpers.faultruns import FaultRow
from helpers.kafkakit import stoppable_broker
from helpers.labfixtures import skip_without_root
from helpers.netcut import linked_namespace

from callmap.broker import ensure_topics, make_consumer, read_to_end
from callmap.config import Settings
from callmap.counters import StageCounters
from callmap.wire import DNS, DnsAnswer, DnsAnswerBatch, decode, encode_batches
from capture.outbox import Outbox, Outgoing
from capture.publisher import Publisher
from capture.sniffer import in_netns

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(1200)]

RATE = 3_500
"""DNS answers a second from one node: what the default 64 MiB outbox holds through a
broker stopped for 60 s and then started (about 70 s unreachable). At 4,000 a second
that run dropped 12,000 answers (counted as dropped)."""
WINDOW = 0.25  # seconds of answers in one submission, as capture's batcher sends them
OUTAGE = 60.0
LONG_OUTAGE = 600.0
DEFAULT_OUTBOX_MIB = 64
"""capture's default ``--outbox-mib``."""
LONG_OUTBOX_MIB = 640
"""What ten minutes at :data:`RATE` need (the default holds about 70 s)."""
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


async def rated_load(
    settings: Settings, seconds: float, outbox_mib: int = DEFAULT_OUTBOX_MIB
) -> Published:
    """Capture's outbox (of ``outbox_mib``) and publisher fed :data:`RATE` answers a second
    for ``seconds``, then drained (up to 180 s)."""
    counters = StageCounters()
    outbox = Outbox(max_bytes=outbox_mib * 1024 * 1024)
    publisher = Publisher(settings.kafka, outbox, counters, send_timeout=3, max_backoff=2)
    sender = asyncio.create_task(publisher.run())
    per_window, sent, most_waiting = int(RATE * WINDOW), 0, 0
    started = time.monotonic()
    try:
        while time.monotonic() < started + seconds:
            for message in answers(sent, per_window):
                publisher.submit(message)
            sent += per_window
            most_waiting = max(most_waiting, len(outbox))
            await asyncio.sleep(max(0.0, started + (sent / RATE) - time.monotonic()))
        published = time.monotonic()
        drained = await publisher.drain(180)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    recovery = time.monotonic() - published if drained else None
    return Published(sent, drained, recovery, sum(counters.dropped.values()), most_waiting)


def check(
    scenario: str,
    run: Published,
    seen: Counter[str],
    report: Callable[[FaultRow], None],
    outage: float = OUTAGE,
) -> None:
    expected = {f"svc-{n}.shop.svc.cluster.local" for n in range(run.sent)}
    lost = expected - set(seen)
    report(
        FaultRow(
            scenario=scenario,
            load=f"{RATE:,} DNS answers/s from one node",
            records_in=run.sent,
            expected=len(expected),
            seen=len(expected & set(seen)),
            lost=len(lost),
            doubled=sum(1 for count in seen.values() if count > 1),
            recovery=run.recovery,
        )
    )
    assert run.drained and not lost, f"{len(lost)} answers lost, {run.dropped} counted as dropped"
    # The premise: the fault held capture back for most of the outage.
    assert run.most_waiting * WINDOW >= outage / 2, f"{run.most_waiting} messages at most"


@pytest.mark.parametrize(
    ("outage", "outbox_mib"),
    [(OUTAGE, DEFAULT_OUTBOX_MIB), (LONG_OUTAGE, LONG_OUTBOX_MIB)],
    ids=["a-minute", "ten-minutes"],
)
async def test_the_broker_away_at_the_rated_load(
    tmp_path: Path, report: Callable[[FaultRow], None], outage: float, outbox_mib: int
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 1) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics, [DNS])

        async def away() -> None:
            await asyncio.sleep(BEFORE)
            await asyncio.to_thread(broker.stop, 0.0)
            await asyncio.sleep(outage)
            await asyncio.to_thread(broker.start)

        fault = asyncio.create_task(away())
        run = await rated_load(settings, BEFORE + outage + AFTER, outbox_mib)
        await fault
        seen = await delivered(settings)
    scenario = f"capture: the broker away {outage:.0f} s ({outbox_mib} MiB outbox)"
    check(scenario, run, seen, report, outage)


async def test_the_link_between_capture_and_the_broker_cut_for_a_minute(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    """The publisher runs in a network namespace of its own (a thread that entered it
    runs its event loop, so every socket it opens is there); the broker listens on the
    host's end of the namespace's link, and the link goes down: no reset, no refusal,
    requests wait for their timeouts, new connections find no route."""
    skip_without_root()
    with linked_namespace() as link:
        async with stoppable_broker(tmp_path / "kafka", 1, host=link.host_ip) as (_, settings):
            await ensure_topics(settings.kafka, settings.topics, [DNS])

            async def cut() -> None:
                await asyncio.sleep(BEFORE)
                await asyncio.to_thread(link.cut)
                await asyncio.sleep(OUTAGE)
                await asyncio.to_thread(link.mend)

            outage = asyncio.create_task(cut())
            seconds = BEFORE + OUTAGE + AFTER
            run = await asyncio.to_thread(
                in_netns, link.namespace, lambda: asyncio.run(rated_load(settings, seconds))
            )
            await outage
            seen = await delivered(settings)
    check(f"capture: its link to the broker cut {OUTAGE:.0f} s", run, seen, report)


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


async def test_the_brokers_disk_full_for_a_minute(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    """The broker's data directory is a small disk; the test fills it, the broker fails
    its next write (Kafka stops a broker whose only log directory failed), and after a
    minute the space is freed and the broker started again, as an operator would."""
    skip_without_root()
    broker_dir = tmp_path / "kafka"
    with small_disk(broker_dir / "data") as data:
        async with stoppable_broker(broker_dir, 1) as (broker, settings):
            await ensure_topics(settings.kafka, settings.topics, [DNS])
            stopped: list[bool] = []

            async def full() -> None:
                await asyncio.sleep(BEFORE)
                filler = await asyncio.to_thread(fill, data)
                await asyncio.sleep(OUTAGE)
                stopped.append(not broker.status().running)
                filler.unlink()
                await asyncio.to_thread(broker.start)

            outage = asyncio.create_task(full())
            run = await rated_load(settings, BEFORE + OUTAGE + AFTER)
            await outage
            seen = await delivered(settings)
    assert stopped == [True], "the broker ran on with a full disk: no fault happened"
    check(f"capture: the broker's disk full {OUTAGE:.0f} s, then freed", run, seen, report)
