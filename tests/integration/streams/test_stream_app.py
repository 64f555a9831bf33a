"""The stream app on a real broker: real Faust workers, real topics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from aiokafka.partitioner import DefaultPartitioner
from helpers.streamkit import (
    Reader,
    Worker,
    cart_service,
    conn,
    dead_letters_from,
    dns,
    names,
    of_cluster,
    pod,
    publish,
    send_raw,
)

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import (
    DLQ,
    DNS,
    EDGES,
    SIGHTINGS,
    FlowHealth,
    SightingBatch,
    SocketObservation,
)
from callmap.wire.topics import for_app

pytestmark = pytest.mark.kafka


@pytest.fixture(autouse=True, scope="module")
async def topics(settings: Settings) -> None:
    await ensure_topics(settings.kafka, settings.topics)


@pytest.fixture
def cluster() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app_id() -> str:
    return f"streams-{uuid.uuid4().hex[:8]}"


def shop(cluster: str) -> list:  # type: ignore[type-arg]
    return [
        pod(cluster, "frontend", "10.1.0.10"),
        pod(cluster, "cartservice", "10.1.0.11"),
        pod(cluster, "checkout", "10.1.0.12"),
        cart_service(cluster),
    ]


async def test_events_and_identities_become_deduplicated_edges(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    letters = await Reader(settings, DLQ.name).mark()
    await publish(settings, shop(cluster))
    # Nothing may be refreshed or expire while it is read, however slow the machine.
    worker = Worker(settings, app_id, tmp_path, "--refresh-interval", "600", "--ttl", "600")
    try:
        worker.wait_ready()
        await publish(
            settings,
            [
                dns(cluster, "cartservice.shop.svc.cluster.local", "10.1.0.10", "10.96.4.2"),
                dns(cluster, "cartservice.shop.svc.cluster.local", "10.1.0.12", "10.96.4.2"),
                dns(cluster, "api.stripe.com", "10.1.0.12", "203.0.113.10"),
                conn(cluster, "10.1.0.10", 40000, "10.96.4.2", 7070, "client"),
                conn(cluster, "10.1.0.11", 7070, "10.1.0.10", 40000, "server"),
                conn(cluster, "10.1.0.12", 40001, "203.0.113.10", 443, "client"),
            ],
        )
        await send_raw(settings, DNS.name, b"\x00not json", b"node-a")
        found = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 3, settle=4)
        dead = await letters.read(dead_letters_from(DNS.name), until=lambda f: len(f) >= 1)
    finally:
        worker.stop()
    assert all(e.event == "new" for e in found), [(e.event, names(e)) for e in found]
    by_pair = {names(e): e for e in found}
    assert set(by_pair) == {
        ("frontend", "cartservice"),
        ("checkout", "cartservice"),
        ("checkout", "api.stripe.com"),
    }
    front = by_pair[("frontend", "cartservice")]
    assert front.server.service == "cartservice"
    stripe = by_pair[("checkout", "api.stripe.com")]
    assert stripe.server.type == "external"
    assert dead and dead[-1].stage == "streams" and "callmap.dns.v1" in dead[-1].error
    partitions = list(range(len(edges.start)))  # where any Kafka client would put each key
    assert edges.placed and all(
        partition == DefaultPartitioner()(key, partitions, partitions)
        for partition, key in edges.placed
    ), edges.placed


async def test_an_identity_arriving_within_the_grace_period_still_names_the_workload(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    worker = Worker(settings, app_id, tmp_path)
    try:
        worker.wait_ready()
        await publish(settings, [conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")])
        await publish(
            settings,
            [pod(cluster, "frontend", "10.1.0.10"), pod(cluster, "cartservice", "10.1.0.11")],
        )
        (edge,) = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, settle=3)
        await publish(settings, [conn(cluster, "10.1.0.10", 40001, "10.9.9.9", 80, "client")])
        later = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 2)
    finally:
        worker.stop()
    assert names(edge) == ("frontend", "cartservice") and edge.ports == (7070,)
    assert names(later[-1]) == ("frontend", "10.9.9.9") and later[-1].server.type == "ip"


async def test_a_udp_flow_becomes_an_edge_with_a_udp_port_beside_the_tcp_ones(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    worker = Worker(settings, app_id, tmp_path, "--refresh-interval", "1")
    try:
        worker.wait_ready()
        udp = conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 53, "client", transport="udp")
        await publish(settings, [udp])
        (new,) = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, settle=2)
        tcp = conn(cluster, "10.1.0.10", 40001, "10.1.0.11", 53, "client")
        await publish(settings, [tcp])
        found = await edges.read(
            of_cluster(cluster), until=lambda f: any(e.ports for e in f), timeout=30
        )
    finally:
        worker.stop()
    assert names(new) == ("frontend", "cartservice") and new.event == "new"
    assert (new.ports, new.udp_ports) == ((), (53,))
    refresh = found[-1]
    assert refresh.event == "refresh" and (refresh.ports, refresh.udp_ports) == ((53,), (53,))


async def test_conntrack_health_reaches_the_edge_and_a_failed_connect_makes_no_edge(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    def tracked(remote: str, health: FlowHealth) -> SocketObservation:
        seen = conn(cluster, "10.1.0.10", 40000, remote, 7070, "client", origin="conntrack")
        return msgspec.structs.replace(seen, health=health)

    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    worker = Worker(settings, app_id, tmp_path, "--refresh-interval", "1")
    try:
        worker.wait_ready()
        await publish(settings, [tracked("10.1.0.11", FlowHealth(opened=3))])
        (new,) = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, settle=2)
        ended = FlowHealth(closed=3, resets=1, bytes_sent=900, bytes_received=4000)
        refused = FlowHealth(failed=2)  # frontend never reached checkout: no edge
        await publish(settings, [tracked("10.1.0.11", ended), tracked("10.1.0.12", refused)])
        found = await edges.read(
            of_cluster(cluster), until=lambda f: any(e.event == "refresh" for e in f), settle=3
        )
    finally:
        worker.stop()
    assert names(new) == ("frontend", "cartservice") and new.health == FlowHealth(opened=3)
    (refresh,) = [e for e in found if e.event == "refresh"]
    assert refresh.health == ended and refresh.count == new.count  # health is no sighting
    assert refresh.health_total == FlowHealth(opened=3).plus(ended)
    assert {names(e) for e in found} == {("frontend", "cartservice")}


async def test_edges_refresh_while_seen_and_expire_when_not(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    worker = Worker(settings, app_id, tmp_path, "--ttl", "8")
    try:
        worker.wait_ready()
        for _ in range(3):  # seen for about 6 seconds: refresh every 3
            await publish(
                settings, [conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")]
            )
            await asyncio.sleep(2.5)
        found = await edges.read(
            of_cluster(cluster), timeout=30, until=lambda f: any(e.event == "expired" for e in f)
        )
    finally:
        worker.stop()
    events = [e.event for e in found]
    assert events[0] == "new" and events[-1] == "expired" and "refresh" in events
    assert events.count("new") == 1 and events.count("expired") == 1
    assert found[-1].count >= 3


# The second worker reads the raw backlog produced while no worker ran. Faust used
# to drop part of it when nothing had been committed yet (see streams/faustapp.py).
async def test_a_killed_worker_restarts_without_announcing_known_edges_again(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    first = Worker(settings, app_id, tmp_path, "--refresh-interval", "600", "--ttl", "600")
    try:
        first.wait_ready()
        await publish(settings, [conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")])
        await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, settle=3)
    finally:
        first.kill()
    await publish(
        settings,
        [
            conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client"),
            conn(cluster, "10.1.0.12", 40002, "10.1.0.11", 7070, "client"),
        ],
    )
    second = Worker(settings, app_id, tmp_path, "--refresh-interval", "600", "--ttl", "600")
    try:
        second.wait_ready()
        found = await edges.read(
            of_cluster(cluster), until=lambda f: len(f) >= 2, settle=5, timeout=90
        )
    finally:
        second.stop()
    news = Counter(names(e) for e in found if e.event == "new")
    assert news == {("frontend", "cartservice"): 1, ("checkout", "cartservice"): 1}


async def test_a_restarted_worker_names_the_external_calls_of_the_backlog_it_reads(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    args = ("--refresh-interval", "600", "--ttl", "600")
    first = Worker(settings, app_id, tmp_path, *args)
    try:
        first.wait_ready()
        await publish(settings, [conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")])
        await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1, settle=3)
    finally:
        first.stop()
    edges = await Reader(settings, EDGES.name).mark()
    # While no worker ran, checkout called api.stripe.com, and went on asking for
    # the name once a second for a minute: the next worker reads answers given
    # after the call before it resolves the call (or retries it).
    began = time.time() - 90
    call = conn(cluster, "10.1.0.12", 40001, "203.0.113.10", 443, "client")
    await publish(settings, [msgspec.structs.replace(call, ts=began + 1, first_seen=began + 1)])
    asked = dns(cluster, "api.stripe.com", "10.1.0.12", "203.0.113.10")
    await publish(settings, [msgspec.structs.replace(asked, ts=began + s) for s in range(61)])
    second = Worker(settings, app_id, tmp_path, *args)
    try:
        second.wait_ready()
        found = await edges.read(
            of_cluster(cluster), until=lambda f: len(f) >= 1, settle=8, timeout=90
        )
    finally:
        second.stop()
    assert [(e.event, names(e)) for e in found] == [("new", ("checkout", "api.stripe.com"))]


async def test_two_workers_share_the_partitions_and_each_edge_is_new_once(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    edges = await Reader(settings, EDGES.name).mark()
    identities = [pod(cluster, f"client{n}", f"10.2.0.{n}") for n in range(1, 21)]
    await publish(settings, [*identities, pod(cluster, "cartservice", "10.1.0.11")])
    # No edge may expire during the test, however long the rebalance takes: an edge
    # seen again after its TTL is rightly new again.
    args = ("--refresh-interval", "600", "--ttl", "86400")
    first = Worker(settings, app_id, tmp_path, *args)
    second = None
    try:
        first.wait_ready()
        calls = [
            conn(cluster, f"10.2.0.{n}", 40000 + n, "10.1.0.11", 7070, "client")
            for n in range(1, 11)
        ]
        await publish(settings, calls)
        await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 10, settle=3)
        # The worker also maps what earlier tests left on the shared raw topics: it
        # holds those edges too, as long as the TTL.
        held = first.gauge("edges")
        second = Worker(settings, app_id, tmp_path, *args)
        second.wait_ready()
        await asyncio.sleep(3)  # the rebalance hands partitions over
        more = [
            conn(cluster, f"10.2.0.{n}", 41000 + n, "10.1.0.11", 7070, "client")
            for n in range(1, 21)
        ]
        await publish(settings, more)
        found = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 20, settle=5)
        # Each edge's state is kept by its owner only: the first worker forgot the
        # states of the partitions it handed over.
        owned = (first.gauge("edges"), second.gauge("edges"))
    finally:
        first.stop()
        if second is not None:
            second.stop()
    news = Counter(names(e) for e in found if e.event == "new")
    assert len(news) == 20 and set(news.values()) == {1}
    assert sum(owned) == held + 10, (owned, held)  # and ten new clients


async def test_a_stopped_worker_hands_over_the_repeats_it_held(
    settings: Settings, cluster: str, app_id: str, tmp_path: Path
) -> None:
    spec = for_app(SIGHTINGS, app_id)
    edges = await Reader(settings, EDGES.name).mark()
    await publish(settings, shop(cluster))
    worker = Worker(settings, app_id, tmp_path, "--combine-interval", "600")
    try:
        worker.wait_ready()
        sightings = await Reader(settings, spec.name, spec).mark()
        call = conn(cluster, "10.1.0.10", 40000, "10.1.0.11", 7070, "client")
        await publish(settings, [call])
        await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 1)
        await publish(settings, [call, call])  # repeats: held for up to 600 s
        await asyncio.sleep(5)
    finally:
        worker.stop()
    found = await sightings.read(
        lambda r: isinstance(r, SightingBatch), until=lambda f: len(f) >= 2, timeout=10
    )
    counts = [s.count for batch in found for s in batch.sightings if s.cluster == cluster]
    assert counts == [1, 2]  # the first at once, the repeats when the worker stopped
