"""An aggregator started before a cluster's identities reached the hub.

A mirror copies each cluster's topics on its own schedule: the hub may hold
east's call to an address of west's before it holds west's pods. An
aggregator starting then must not put that call on the global map under the
raw address and rename it a moment later (two edges for one call, one of
them expired): the call waits for the names, as it would had it arrived
while the aggregator ran. And a restart keeps what was announced before it
as it was, even an edge announced unnamed.

The truth is the scenario, written by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers.aggregatekit import Running, eventually_map, global_topic, publish
from helpers.clustersets import edge, pod, workload
from helpers.kafkakit import own_broker

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import ALL_TOPICS, EDGES, PODS, Endpoint

pytestmark = pytest.mark.kafka

FRONTEND = workload("frontend")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_broker(tmp_path_factory) as settings:
        asyncio.run(ensure_topics(settings.kafka, settings.topics, ALL_TOPICS))
        yield settings


async def test_a_call_replayed_before_its_servers_identity_waits_and_is_named_once(
    settings: Settings,
) -> None:
    await publish(
        settings,
        [
            (PODS.name, pod("east", "frontend-1", "10.0.0.5", "frontend")),
            (EDGES.name, edge("east", FRONTEND, Endpoint(type="ip", ip="10.1.0.7"), edge_id="e1")),
        ],
    )
    running = Running(settings)
    try:
        await running.ready()
        assert running.worker.waiting() == 1
        assert await global_topic(settings) == []
        await publish(settings, [(PODS.name, pod("west", "api-1", "10.1.0.7", "api"))])
        messages = await eventually_map(settings, {("east/shop/frontend", "west/shop/api")})
    finally:
        await running.end()
    assert [m.event for m in messages] == ["new"]


async def test_a_restart_keeps_an_edge_announced_unnamed_as_it_was(settings: Settings) -> None:
    stray = edge("east", FRONTEND, Endpoint(type="ip", ip="10.7.7.7"), edge_id="e2")
    await publish(settings, [(EDGES.name, stray)])
    truth = {("east/shop/frontend", "west/shop/api"), ("east/shop/frontend", "east/ip:10.7.7.7")}
    first = Running(settings, grace=1.0)
    try:
        await first.ready()
        await eventually_map(settings, truth)  # nobody holds 10.7.7.7: announced unnamed
    finally:
        await first.end()
    second = Running(settings)  # a grace far longer than the test
    try:
        await second.ready()
        assert second.worker.waiting() == 0
        await asyncio.sleep(2)  # what settling announced is on the topic
        messages = await eventually_map(settings, truth, timeout=0)
    finally:
        await second.end()
    assert sorted(m.event for m in messages) == ["new", "new"]
