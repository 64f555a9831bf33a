"""An old leader cannot publish once a new one has started: Kafka fences it, and a
leader whose lease went unrenewed past its deadline stops on its own."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.counters import StageCounters
from callmap.wire import IDENTITY_TOPICS, PodIdentity, WorkloadRef
from watch.identitytable import IdentityTables
from watch.lease import LeadershipLost
from watch.publisher import Publisher
from watch.readback import read_back

pytestmark = pytest.mark.kafka


def pod(cluster: str, n: int) -> PodIdentity:
    return PodIdentity(
        cluster=cluster,
        uid=f"pod-{n}",
        namespace="shop",
        name=f"web-{n}",
        ips=(f"10.8.0.{n + 1}",),
        workload=WorkloadRef(kind="Deployment", name="web"),
    )


async def drained(publisher: Publisher) -> None:
    while len(publisher):
        await asyncio.sleep(0.05)


async def published(settings: Settings, cluster: str) -> set[str]:
    state = IdentityTables(math.inf, lambda change: None)
    await read_back(settings.kafka, cluster, state.adopt, StageCounters())
    return {key for key, _ in state.pods.items()}


async def test_a_new_leaders_producer_fences_the_old_leader(settings: Settings) -> None:
    cluster = f"fence-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, settings.topics, IDENTITY_TOPICS)
    old = Publisher(settings.kafka, StageCounters(), cluster=cluster, send_timeout=5)
    old_tables = IdentityTables(3600.0, old.submit)
    old_sender = asyncio.create_task(old.run())
    old_tables.pods.put("pod-0", pod(cluster, 0))
    await asyncio.wait_for(drained(old), 30)

    new = Publisher(settings.kafka, StageCounters(), cluster=cluster, send_timeout=5)
    await new.connect()  # a new leader starts, before it reads the topics back
    old_tables.pods.put("pod-1", pod(cluster, 1))  # the old one has not noticed
    with pytest.raises(LeadershipLost, match="another watcher"):
        await asyncio.wait_for(old_sender, 30)

    new_tables = IdentityTables(3600.0, new.submit)
    new_sender = asyncio.create_task(new.run())
    new_tables.pods.put("pod-2", pod(cluster, 2))
    await asyncio.wait_for(drained(new), 30)
    new_sender.cancel()
    await asyncio.gather(new_sender, return_exceptions=True)
    assert await published(settings, cluster) == {"pod-0", "pod-2"}


async def test_a_leader_past_its_renew_deadline_publishes_nothing(settings: Settings) -> None:
    cluster = f"fence-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, settings.topics, IDENTITY_TOPICS)
    publisher = Publisher(settings.kafka, StageCounters(), cluster=cluster, send_timeout=5)
    entitled = True
    publisher.entitled = lambda: entitled
    tables = IdentityTables(3600.0, publisher.submit)
    sender = asyncio.create_task(publisher.run())
    tables.pods.put("pod-0", pod(cluster, 0))
    await asyncio.wait_for(drained(publisher), 30)
    entitled = False  # say, the process was paused past the deadline
    tables.pods.put("pod-1", pod(cluster, 1))
    with pytest.raises(LeadershipLost, match="deadline"):
        await asyncio.wait_for(sender, 30)
    assert await published(settings, cluster) == {"pod-0"}
