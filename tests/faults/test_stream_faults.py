"""Stream workers and brokers failing under load: every edge announced ``new``
exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.faultruns import Fault, FaultRow, killing, row, under_load
from helpers.kafkakit import stoppable_broker
from helpers.streamkit import Worker

from callmap.config import Settings, load_settings
from devtools.kafka import DevBroker
from devtools.kafkacluster import DevKafkaCluster

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(1800)]

OUTAGE = 20.0  # seconds a broker stays down


def broker_down(broker: DevBroker, *, kill: bool) -> Fault:
    """Stop ``broker`` (SIGKILL, or a clean stop) once the workers hold edges; start it
    again after :data:`OUTAGE` seconds."""

    async def fault(running: list[Worker], rng: random.Random) -> None:
        for worker in running:
            await asyncio.to_thread(worker.wait_owning)
        await asyncio.sleep(rng.uniform(1, 3))
        await asyncio.to_thread(broker.stop, 0.0 if kill else 30.0)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(broker.start)

    return fault


async def test_stream_workers_killed_20_times(
    settings: Settings, tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    outcome = await under_load(settings, tmp_path, killing(20), clients=12_000)
    report(row("stream worker SIGKILL x20 at random moments", outcome))
    outcome.check()


@pytest.fixture(scope="module")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKafkaCluster]:
    cluster = DevKafkaCluster(tmp_path_factory.mktemp("kafka3"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_one_of_three_brokers_killed(
    three_brokers: DevKafkaCluster, tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    settings = load_settings(
        {"CALLMAP_KAFKA_BOOTSTRAP": three_brokers.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "3"}
    )
    fault = broker_down(three_brokers.brokers[2], kill=True)
    outcome = await under_load(settings, tmp_path, fault, replication=None)
    report(row(f"one of three brokers SIGKILLed, back after {OUTAGE:.0f} s", outcome))
    outcome.check()


async def test_the_only_broker_restarted(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 3) as (broker, settings):
        fault = broker_down(broker, kill=False)
        outcome = await under_load(settings, tmp_path, fault)
    report(row(f"the only broker stopped for {OUTAGE:.0f} s, then started", outcome))
    outcome.check()
