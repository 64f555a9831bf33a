"""A cluster removed from the hub: its edges expire on its TTL, nobody else's do.

Two clusters share one broker's topics. "alive" keeps refreshing its edge as
a cluster's stream app does; "gone" says nothing after its first edge (its
pipeline, mirror or the cluster itself is gone). The aggregator runs with a
20 s TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from helpers.aggregatekit import Running, global_topic, named, publish
from helpers.clustersets import edge, workload
from helpers.kafkakit import own_broker

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import ALL_TOPICS, EDGES, Edge

pytestmark = pytest.mark.kafka

TTL = 20.0


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_broker(tmp_path_factory) as settings:
        yield settings


async def test_a_silent_cluster_expires_on_its_ttl_and_touches_no_other(settings: Settings) -> None:
    await ensure_topics(settings.kafka, settings.topics, ALL_TOPICS)
    began = time.time()
    await publish(
        settings,
        [
            (
                EDGES.name,
                edge("gone", workload("web"), workload("db"), edge_id="g1", last_seen=began),
            ),
            (
                EDGES.name,
                edge("alive", workload("web"), workload("db"), edge_id="a1", last_seen=began),
            ),
        ],
    )
    running = Running(settings, peers=[], ttl=TTL)
    try:
        await running.ready()
        checked_early = False
        while time.time() - began < TTL + 10:
            if not checked_early and time.time() - began > TTL - 5:
                early = await global_topic(settings)
                assert [m.event for m in early if m.client.cluster == "gone"] == ["new"]
                checked_early = True  # not expired before its TTL
            refresh = edge(
                "alive", workload("web"), workload("db"), edge_id="a1", event="refresh",
                last_seen=time.time(),
            )  # fmt: skip
            await publish(settings, [(EDGES.name, refresh)])
            await asyncio.sleep(2)
        messages = await global_topic(settings)
    finally:
        await running.end()
    by_client: dict[str, list[Edge]] = {}
    for message in messages:
        by_client.setdefault(named(message.client), []).append(message)
    gone = by_client["gone/shop/web"]
    alive = by_client["alive/shop/web"]
    assert [m.event for m in gone] == ["new", "expired"]
    assert alive[0].event == "new" and all(m.event != "expired" for m in alive)
    assert checked_early
    assert gone[-1].last_seen == pytest.approx(began)  # what its cluster last said
