"""Two clusters, each with its own broker, mirrored into a hub by MirrorMaker 2.

Real brokers and Kafka's own MirrorMaker 2; the aggregator reads the hub.
The truth is the scenario, written by hand. One cluster's mirror is stopped
for half a minute: nothing of it is lost, nothing is announced ``new`` twice, its
edges do not expire, and it shows as stale while the other does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from helpers.aggregatekit import Running, eventually_map, named, publish
from helpers.clustersets import edge, pod, service, workload
from helpers.kafkakit import broker_settings

from aggregate.sources import mirrored_name
from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import ALL_TOPICS, CLUSTERS, EDGES, PODS, SERVICES, ClusterInfo, Endpoint
from devtools.kafka import DevBroker
from devtools.mirror import DevMirror, wait_mirrored
from devtools.process import free_port

pytestmark = pytest.mark.kafka

OUTAGE = 30.0  # three heartbeats missed after 15 s; the other cluster beats on
HEARTBEAT = 5.0


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Settings]]:
    started = {}
    try:
        for name in ("east", "west", "hub"):
            broker = DevBroker(tmp_path_factory.mktemp(f"kafka-{name}"), port=free_port())
            broker.start()
            started[name] = broker
        yield {name: broker_settings(b.bootstrap) for name, b in started.items()}
    finally:
        for broker in started.values():
            broker.stop()


@pytest.fixture(scope="module")
def mirror(
    brokers: dict[str, Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevMirror]:
    for name in ("east", "west"):
        asyncio.run(ensure_topics(brokers[name].kafka, brokers[name].topics, ALL_TOPICS))
    sources = {name: brokers[name].kafka.bootstrap_servers for name in ("east", "west")}
    instance = DevMirror(
        tmp_path_factory.mktemp("mirror"), sources, ("hub", brokers["hub"].kafka.bootstrap_servers)
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def beat(name: str) -> ClusterInfo:
    return ClusterInfo(cluster=name, uid=f"uid-{name}", ts=time.time(), heartbeat=HEARTBEAT)


@contextlib.asynccontextmanager
async def heartbeats(brokers: dict[str, Settings], *names: str):  # type: ignore[no-untyped-def]
    """Each cluster's watch leader: a heartbeat every HEARTBEAT seconds."""

    async def loop() -> None:
        while True:
            for name in names:
                await publish(brokers[name], [(CLUSTERS.name, beat(name))])
            await asyncio.sleep(HEARTBEAT / 2)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_mirrored_clusters_aggregate_and_survive_a_stopped_mirror(
    brokers: dict[str, Settings], mirror: DevMirror
) -> None:
    east, west, hub = brokers["east"], brokers["west"], brokers["hub"]
    await publish(east, [(PODS.name, pod("east", "frontend-1", "10.0.0.5", "frontend"))])
    await publish(
        west,
        [
            (PODS.name, pod("west", "api-1", "10.0.0.7", "api")),
            (SERVICES.name, service("west", "api", "10.96.0.1", ("api",), exported=True)),
        ],
    )
    await publish(
        east,
        [
            (
                EDGES.name,
                edge(
                    "east", workload("frontend"), Endpoint(type="ip", ip="10.0.0.7"), edge_id="e1"
                ),
            ),
            (EDGES.name, edge("east", workload("frontend"), workload("cart"), edge_id="e2")),
        ],
    )
    await publish(west, [(EDGES.name, edge("west", workload("api"), workload("db"), edge_id="w1"))])
    hub_topics = [mirrored_name(n, s) for n in ("east", "west") for s in (EDGES, PODS, CLUSTERS)]
    async with heartbeats(brokers, "east", "west"):
        await asyncio.to_thread(wait_mirrored, hub.kafka.bootstrap_servers, hub_topics)
        running = Running(hub, peers=[["east", "west"]])
        try:
            await running.ready()
            truth = {
                ("east/shop/frontend", "west/shop/api"),
                ("east/shop/frontend", "east/shop/cart"),
                ("west/shop/api", "west/shop/db"),
            }
            await eventually_map(hub, truth, timeout=90)

            mirror.stop()  # east's and west's flows both stop: restart west's alone
            west_only = DevMirror(
                mirror.directory.parent / "west-only",
                {"west": west.kafka.bootstrap_servers},
                ("hub", hub.kafka.bootstrap_servers),
            )
            west_only.start()
            try:  # a failed check must not leave this MirrorMaker running
                outage_began = time.monotonic()
                late = edge("east", workload("frontend"), workload("search"), edge_id="e3")
                await publish(east, [(EDGES.name, late)])
                await publish(
                    west,
                    [(EDGES.name, edge("west", workload("api"), workload("cache"), edge_id="w2"))],
                )
                truth_west = truth | {("west/shop/api", "west/shop/cache")}
                await eventually_map(hub, truth_west, timeout=90)  # east's late edge is not there
                await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_began)))
                health = running.worker.identities.health
                assert health.stale(time.time()) == ["east"]  # west still beats
                assert (
                    await eventually_map(hub, truth_west, timeout=5)
                ) is not None  # none expired
            finally:
                west_only.stop()
            mirror.start()
            messages = await eventually_map(
                hub, truth_west | {("east/shop/frontend", "east/shop/search")}, timeout=120
            )
            deadline = time.monotonic() + 60
            while health.stale(time.time()) and time.monotonic() < deadline:
                await asyncio.sleep(1)
            assert health.stale(time.time()) == []
        finally:
            await running.end()
    news = Counter(m.edge_id for m in messages if m.event == "new")
    assert set(news.values()) == {1}, news
    assert not [m for m in messages if m.event == "expired"], [named(m.server) for m in messages]
