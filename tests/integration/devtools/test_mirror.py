"""MirrorMaker 2 copies each cluster's shared topics into a hub, record for record.

Real brokers (two clusters and a hub) and Kafka's own MirrorMaker 2. The
truth is what the test itself produced at each source, with the partition the
source broker put each record in; the hub is read with a plain consumer. A
restart must lose nothing; what it delivers twice is counted and printed
(``-s`` shows it), and with exactly-once on, a reader that takes committed
records only must see none twice, even after MirrorMaker was killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from helpers.kafkakit import broker_settings

from callmap.broker import (
    admin_client,
    describe_topics,
    ensure_topics,
    make_consumer,
    read_to_end,
    start_producer,
    topic_partitions,
)
from callmap.config import Settings
from callmap.wire.topics import EDGES, SHARED_TOPICS, mirrored
from devtools.kafka import DevBroker
from devtools.mirror import DevMirror, wait_mirrored
from devtools.process import free_port

pytestmark = pytest.mark.kafka

SOURCES = ("east", "west")
Sent = tuple[int, bytes, bytes]
"""(partition, key, value) of one record."""


@pytest.fixture(scope="module")
def produced() -> dict[str, list[Sent]]:
    """Every record the module's tests produced, per source cluster: the truth."""
    return {name: [] for name in SOURCES}


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Settings]]:
    started: dict[str, DevBroker] = {}
    try:
        for name in (*SOURCES, "hub"):
            broker = DevBroker(tmp_path_factory.mktemp(f"kafka-{name}"), port=free_port())
            broker.start()
            started[name] = broker
        settings = {name: broker_settings(b.bootstrap) for name, b in started.items()}
        for name in SOURCES:
            asyncio.run(ensure_topics(settings[name].kafka, settings[name].topics, SHARED_TOPICS))
        yield settings
    finally:
        for broker in started.values():
            broker.stop()


async def produce(
    settings: Settings, records: list[tuple[bytes, bytes]], ledger: list[Sent]
) -> list[Sent]:
    """Send keyed records to the edges topic; where the source broker put each
    (also appended to ``ledger``)."""
    producer = await start_producer(settings.kafka, 30.0)
    try:
        sent = []
        for key, value in records:
            metadata = await producer.send_and_wait(EDGES.name, value, key=key)
            sent.append((metadata.partition, key, value))
            ledger.append(sent[-1])
        return sent
    finally:
        await producer.stop()


async def hub_records(hub: Settings, topic: str, *, committed_only: bool) -> list[Sent]:
    """Every record of ``topic`` at the hub, in offset order per partition."""
    partitions = await topic_partitions(hub.kafka, [topic])
    isolation = "read_committed" if committed_only else "read_uncommitted"
    consumer = make_consumer(hub.kafka, isolation_level=isolation)
    await consumer.start()
    try:
        found = []
        async for message in read_to_end(consumer, partitions):
            assert message.key is not None and message.value is not None
            found.append((message.partition, message.key, message.value))
        return found
    finally:
        await consumer.stop()


async def alter_edges_topic(settings: Settings, changes: dict[str, str]) -> None:
    """Change the edges topic's configs at a source (AlterConfigs replaces them all)."""
    async with admin_client(settings.kafka) as admin:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, EDGES.name, {**EDGES.configs(), **changes}
        )
        await admin.alter_configs([resource])


def hub_config(hub: Settings, topic: str, name: str) -> str | None:
    [state] = asyncio.run(describe_topics(hub.kafka, [topic]))
    return state.configs.get(name)


def eventually_all(hub: Settings, topic: str, wanted: list[Sent], timeout: float) -> list[Sent]:
    """The hub's records of ``topic`` once every wanted record is among them."""
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(hub_records(hub, topic, committed_only=True))
        missing = set(wanted) - set(found)
        if not missing:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} of {len(wanted)} records not at the hub: {topic}")
        time.sleep(1.0)


def twice(records: list[Sent]) -> int:
    """How many deliveries beyond the first (every value the test sends is unique)."""
    return sum(n - 1 for n in Counter(records).values())


def batch(cluster: str, round_: int, keys: range) -> list[tuple[bytes, bytes]]:
    return [(f"{cluster}-{k}".encode(), f"{cluster}-{k}-round{round_}".encode()) for k in keys]


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_each_source_reaches_the_hub_whole_and_a_restart_loses_nothing(
    brokers: dict[str, Settings],
    produced: dict[str, list[Sent]],
    tmp_path_factory: pytest.TempPathFactory,
    exactly_once: bool,
) -> None:
    hub = brokers["hub"]
    round_ = 1 if exactly_once else 10  # the at-least-once run starts on the same sources
    sent = {
        name: asyncio.run(produce(brokers[name], batch(name, round_, range(40)), produced[name]))
        for name in SOURCES
    }
    mirror = DevMirror(
        tmp_path_factory.mktemp("mirror"),
        {name: brokers[name].kafka.bootstrap_servers for name in SOURCES},
        ("hub", hub.kafka.bootstrap_servers),
        exactly_once=exactly_once,
    )
    mode = "eos" if exactly_once else "alo"
    east = produced["east"]
    # Earlier tests' records are at the hub too: count only this one's.
    mine = set(sent["east"])
    began = time.monotonic()
    mirror.start()
    try:
        names = {name: mirrored(EDGES, name).name for name in SOURCES}
        wait_mirrored(hub.kafka.bootstrap_servers, names.values(), timeout=120)
        first = {name: eventually_all(hub, names[name], sent[name], 90) for name in SOURCES}
        print(f"\n[{mode}] mirrored in {time.monotonic() - began:.0f}s")

        # Exactly the source's records (this test's and any earlier one's), each in
        # the partition it had at its source.
        for name in SOURCES:
            assert set(first[name]) == set(produced[name])
        topics = asyncio.run(describe_topics(hub.kafka, names.values()))
        for state in topics:
            assert state.partitions == brokers["east"].topics.partitions_for(EDGES) == 3
            assert state.configs["cleanup.policy"] == "compact"

        # A topic config changed at a source reaches the hub's copy.
        ratio = "0.25" if exactly_once else "0.3"
        asyncio.run(alter_edges_topic(brokers["east"], {"min.cleanable.dirty.ratio": ratio}))
        deadline = time.monotonic() + 60
        while hub_config(hub, names["east"], "min.cleanable.dirty.ratio") != ratio:
            assert time.monotonic() < deadline, "the topic config did not reach the hub"
            time.sleep(1.0)

        # Stopped (SIGTERM), then records produced meanwhile: nothing lost on restart.
        stopping = time.monotonic()
        mirror.stop()
        during = asyncio.run(
            produce(brokers["east"], batch("east", round_ + 1, range(20, 60)), east)
        )
        mirror.start()
        mine.update(during)
        after_stop = eventually_all(hub, names["east"], [*sent["east"], *during], 90)
        stopped_twice = twice([r for r in after_stop if r in mine])
        print(f"[{mode}] caught up {time.monotonic() - stopping:.0f}s after a stop")

        # Killed (SIGKILL) after copying records whose source offsets it may not have
        # committed yet, then more records: nothing lost either.
        more = asyncio.run(produce(brokers["east"], batch("east", round_ + 2, range(0, 200)), east))
        eventually_all(hub, names["east"], more, 90)
        pid = mirror.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        last = asyncio.run(produce(brokers["east"], batch("east", round_ + 3, range(0, 10)), east))
        killed = time.monotonic()
        mirror.start()
        whole = [*sent["east"], *during, *more, *last]
        mine.update(whole)
        after_kill = eventually_all(hub, names["east"], whole, 180)
        print(f"[{mode}] caught up {time.monotonic() - killed:.0f}s after a kill")
        everything = asyncio.run(hub_records(hub, names["east"], committed_only=False))
    finally:
        mirror.stop()
    committed_twice = twice([r for r in after_kill if r in mine])
    all_twice = twice([r for r in everything if r in mine])
    print(
        f"[{mode}] delivered twice: {stopped_twice} after a stop, "
        f"{committed_twice} committed / {all_twice} in the log after a kill; "
        f"{time.monotonic() - began:.0f}s in all"
    )
    assert not set(whole) - set(after_kill)
    if exactly_once:
        assert committed_twice == 0
