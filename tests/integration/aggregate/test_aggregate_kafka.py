"""``callmap aggregate`` on a real broker: clusters sharing one Kafka's topics.

Three clusters write the shared topics: east and west are peered, north's
pod range overlaps west's and it peers with nobody. The truth is the scenario
below, written by hand: which workload each address and name belongs to.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from helpers.aggregatekit import Running, eventually_map, named, publish
from helpers.clustersets import edge, pod, service, workload
from helpers.kafkakit import own_broker

from callmap.broker import (
    ensure_topics,
)
from callmap.config import Settings
from callmap.wire import (
    ALL_TOPICS,
    CLUSTERS,
    EDGES,
    PODS,
    SERVICES,
    ClusterInfo,
    Endpoint,
    Record,
)

pytestmark = pytest.mark.kafka

IDENTITIES: list[tuple[str, Record]] = [
    (PODS.name, pod("east", "frontend-1", "10.0.0.5", "frontend")),
    (PODS.name, pod("west", "api-1", "10.1.0.7", "api")),
    (SERVICES.name, service("west", "api", "10.96.1.1", ("api",), exported=True)),
    (PODS.name, pod("north", "api-1", "10.1.0.99", "api")),
    (SERVICES.name, service("north", "api", "10.96.1.1", ("api",), exported=True)),
    *[
        (CLUSTERS.name, ClusterInfo(cluster=name, uid=f"uid-{name}", ts=0.0, heartbeat=30.0))
        for name in ("east", "west", "north")
    ],
]

FRONTEND, X, API = workload("frontend"), workload("x"), workload("api")
CLUSTERSET_API = Endpoint(type="external", dns_name="api.shop.svc.clusterset.local")
EXAMPLE = Endpoint(type="external", dns_name="example.com")

SOURCE_EDGES = [
    edge("east", FRONTEND, Endpoint(type="ip", ip="10.1.0.7"), edge_id="e1"),  # west's api pod
    edge("west", Endpoint(type="ip", ip="10.0.0.5"), API, edge_id="w1"),  # east's frontend
    edge("north", X, Endpoint(type="ip", ip="10.1.0.7"), edge_id="n1"),  # nobody north has
    edge("east", FRONTEND, CLUSTERSET_API, edge_id="e2"),  # exported by west and north
    edge("east", FRONTEND, EXAMPLE, edge_id="e3"),
]

GRACE = 10.0
"""How long the workers hold an edge they cannot name: north's call to an address nobody
north holds waits this long at each worker's start before it is announced unnamed."""

TRUTH = {
    ("east/shop/frontend", "west/shop/api"),  # e1, w1 and e2 (west)
    ("east/shop/frontend", "north/shop/api"),  # e2 (north)
    ("north/shop/x", "north/ip:10.1.0.7"),  # never west's pod: north is not its peer
    ("east/shop/frontend", "external:example.com"),
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_broker(tmp_path_factory) as settings:
        yield settings


@pytest.fixture(scope="module")
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings.kafka, settings.topics, ALL_TOPICS)
    await publish(settings, IDENTITIES)
    await publish(settings, [(EDGES.name, e) for e in SOURCE_EDGES])
    return settings


@pytest.fixture
async def worker(topics: Settings) -> AsyncIterator[Running]:
    running = Running(topics, grace=GRACE)
    try:
        yield running
    finally:
        await running.end()


async def test_cross_cluster_calls_are_named_on_both_sides(
    topics: Settings, worker: Running
) -> None:
    await worker.ready()
    messages = await eventually_map(topics, TRUTH)
    assert all(m.event == "new" for m in messages)
    merged = next(m for m in messages if named(m.server) == "west/shop/api")
    assert merged.count == 3  # east's socket, west's socket and east's clusterset name
    assert worker.worker.identities.health.stale(time.time()) == []


async def test_a_restart_announces_nothing_new_twice_and_catches_up(topics: Settings) -> None:
    first = Running(topics, grace=GRACE)
    await first.ready()
    await first.end()
    late = edge("west", Endpoint(type="ip", ip="10.0.0.5"), workload("cart"), edge_id="w2")
    await publish(topics, [(EDGES.name, late)])
    second = Running(topics, grace=GRACE)
    try:
        await second.ready()
        truth = TRUTH | {("east/shop/frontend", "west/shop/cart")}
        messages = await eventually_map(topics, truth)
    finally:
        await second.end()
    news = Counter(m.edge_id for m in messages if m.event == "new")
    assert set(news.values()) == {1}


async def test_workers_share_the_clusters_and_a_source_expiry_expires_globally(
    topics: Settings,
) -> None:
    one, two = Running(topics, grace=GRACE), Running(topics, grace=GRACE)
    try:
        await one.ready()
        await two.ready()
        gone = edge("east", FRONTEND, EXAMPLE, edge_id="e3", event="expired")
        fresh = edge("north", X, workload("db"), edge_id="n2")
        await publish(topics, [(EDGES.name, gone), (EDGES.name, fresh)])
        truth = (TRUTH - {("east/shop/frontend", "external:example.com")}) | {
            ("east/shop/frontend", "west/shop/cart"),
            ("north/shop/x", "north/shop/db"),
        }
        messages = await eventually_map(topics, truth)
    finally:
        await one.end()
        await two.end()
    news = Counter(m.edge_id for m in messages if m.event == "new")
    assert set(news.values()) == {1}
    assert sum(len(w.worker.owned) for w in (one, two)) <= 3


async def test_a_cluster_exporting_later_joins_the_calls_to_the_clusterset_name(
    topics: Settings, worker: Running
) -> None:
    await worker.ready()
    await eventually_map(topics, _EARLIER)
    await publish(
        topics,
        [
            (PODS.name, pod("south", "api-1", "10.3.0.4", "api")),
            (SERVICES.name, service("south", "api", "10.96.1.1", ("api",), exported=True)),
        ],
    )
    # e2 was named when west and north exported the service; south joins it.
    await eventually_map(topics, _EARLIER | {("east/shop/frontend", "south/shop/api")})


async def test_a_call_seen_before_its_servers_identity_is_announced_once_by_name(
    topics: Settings, worker: Running
) -> None:
    await worker.ready()
    before = _EARLIER | {("east/shop/frontend", "south/shop/api")}
    await eventually_map(topics, before)
    early = edge("east", FRONTEND, Endpoint(type="ip", ip="10.1.0.9"), edge_id="e4")
    await publish(topics, [(EDGES.name, early)])
    await _eventually(lambda: worker.worker.waiting() == 1)  # read, and nobody holds 10.1.0.9
    await publish(topics, [(PODS.name, pod("west", "ledger-1", "10.1.0.9", "ledger"))])
    messages = await eventually_map(topics, before | {("east/shop/frontend", "west/shop/ledger")})
    assert [named(m.server) for m in messages if m.server.ip == "10.1.0.9"] == []
    assert worker.worker.waiting() == 0


async def test_an_address_nobody_holds_is_announced_when_its_grace_ends(topics: Settings) -> None:
    running = Running(topics, grace=1.0)
    try:
        await running.ready()
        stray = edge("east", FRONTEND, Endpoint(type="ip", ip="10.7.7.7"), edge_id="e5")
        await publish(topics, [(EDGES.name, stray)])
        await eventually_map(
            topics,
            _EARLIER
            | {
                ("east/shop/frontend", "south/shop/api"),
                ("east/shop/frontend", "west/shop/ledger"),
                ("east/shop/frontend", "east/ip:10.7.7.7"),
            },
        )
        events = running.worker.counters.events
        assert (events["source_edge_waits"], events["source_edge_unnamed_after_grace"]) == (1, 1)
    finally:
        await running.end()


async def _eventually(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


# The map the earlier tests of this module left on the shared topics.
_EARLIER = (TRUTH - {("east/shop/frontend", "external:example.com")}) | {
    ("east/shop/frontend", "west/shop/cart"),
    ("north/shop/x", "north/shop/db"),
}
