"""Kafka brokers and settings for the tests (imported by the conftest files)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callmap.config import Settings, load_settings
from devtools.kafka import DevBroker
from devtools.process import free_port


def broker_settings(bootstrap: str) -> Settings:
    """Settings for a test broker: one replica, few partitions (fast to create)."""
    return load_settings(
        {
            "CALLMAP_KAFKA_BOOTSTRAP": bootstrap,
            "CALLMAP_CLUSTER": "test",
            "CALLMAP_TOPIC_PARTITIONS": "3",
            "CALLMAP_TOPIC_REPLICATION": "1",
        }
    )


@contextlib.contextmanager
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A broker of its own for tests whose stream apps read topics from the start.

    A new consumer group reads the raw topics from the beginning: on the
    session broker that is everything every earlier test produced, and the
    wait grows with the suite. An external broker (CALLMAP_KAFKA_BOOTSTRAP)
    is shared all the same.
    """
    external = os.environ.get("CALLMAP_KAFKA_BOOTSTRAP")
    if external:
        yield broker_settings(external)
        return
    broker = DevBroker(tmp_path_factory.mktemp("kafka-own"), port=free_port())
    broker.start()
    try:
        yield broker_settings(broker.bootstrap)
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def stoppable_broker(
    directory: Path, partitions: int, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[DevBroker, Settings]]:
    """A broker of the test's own, which the test may stop and start again, and settings
    that create topics of ``partitions`` partitions on it; clients reach it at ``host``."""
    broker = DevBroker(directory, port=free_port(), host=host)
    await asyncio.to_thread(broker.start)
    try:
        yield (
            broker,
            load_settings(
                {
                    "CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "CALLMAP_TOPIC_PARTITIONS": str(partitions),
                }
            ),
        )
    finally:
        await asyncio.to_thread(broker.stop)
