"""A Kafka outage loses no identity: changes wait, one per key, and go out when Kafka is back.

This test runs a broker of its own, so that it can stop it.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from callmap.broker import ensure_topics
from callmap.config import load_settings
from callmap.counters import StageCounters
from callmap.wire import IDENTITY_TOPICS, PodIdentity, WorkloadRef
from devtools.kafka import DevBroker
from devtools.process import free_port
from watch.identitytable import IdentityTables
from watch.publisher import Publisher
from watch.readback import read_back

pytestmark = pytest.mark.kafka


def pod(n: int, ip: str) -> PodIdentity:
    return PodIdentity(
        cluster="outage",
        uid=f"pod-{n}",
        namespace="shop",
        name=f"web-{n}",
        ips=(ip,),
        workload=WorkloadRef(kind="Deployment", name="web"),
    )


async def test_changes_made_while_kafka_is_away_arrive_newest_per_key(tmp_path: Path) -> None:
    broker = DevBroker(tmp_path / "kafka", port=free_port())
    await asyncio.to_thread(broker.start)
    try:
        settings = load_settings(
            {"CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "2"}
        )
        await ensure_topics(settings.kafka, settings.topics, IDENTITY_TOPICS)
        counters = StageCounters()
        publisher = Publisher(settings.kafka, counters, send_timeout=3, max_backoff=1)
        tables = IdentityTables(3600.0, publisher.submit)
        sender = asyncio.create_task(publisher.run())

        for n in range(5):
            tables.pods.put(f"pod-{n}", pod(n, f"10.7.0.{n}"))
        await asyncio.wait_for(_drained(publisher), 30)

        await asyncio.to_thread(broker.stop)
        for n in range(5):  # every pod moves twice while Kafka is away
            tables.pods.put(f"pod-{n}", pod(n, f"10.7.1.{n}"))
            tables.pods.put(f"pod-{n}", pod(n, f"10.7.2.{n}"))
        tables.pods.delete("pod-4", now=50.0)
        await asyncio.wait_for(_failed(publisher), 30)
        assert len(publisher) == 5  # one change per key waits

        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(_drained(publisher), 60)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

        state = IdentityTables(math.inf, lambda change: None)
        await read_back(settings.kafka, "outage", state.adopt, StageCounters())
        assert {key: r.ips for key, r in state.pods.items()} == {
            f"pod-{n}": (f"10.7.2.{n}",) for n in range(5)
        }
        gone = state.pods.get("pod-4")
        assert gone is not None and gone.deleted == 50.0
        assert counters.emitted == 10 and counters.dropped["superseded"] == 6
    finally:
        await asyncio.to_thread(broker.stop)


async def _failed(publisher: Publisher) -> None:
    while publisher.connected:
        await asyncio.sleep(0.05)


async def _drained(publisher: Publisher) -> None:
    while len(publisher):
        await asyncio.sleep(0.05)
