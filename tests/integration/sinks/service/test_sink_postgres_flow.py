"""The PostgreSQL sink against a real server: the same schema as SQLite, batched
upserts, crash and replay, the server down for a while, and reading the map back."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from click.testing import CliRunner
from helpers.sinkcorpus import load_jsonl

from callmap.errors import PermanentError
from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.changes import Change
from sinks.lifecycle import EdgeBook
from sinks.maps.cli import list_command
from sinks.service.destinations.postgres import PostgresSink, load_edges, migrate
from sinks.service.formats import sqlschema as schema

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture
async def dsn(postgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(postgres.dsn())
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return str(postgres.dsn(name))


def events(edges: int) -> list[Edge]:
    result = []
    for step, event in enumerate(("new", "refresh", "expired")):
        for index in range(edges):
            result.append(
                Edge(
                    edge_id=f"pg-{index}",
                    event=event,  # type: ignore[arg-type]
                    cluster="test",
                    client=Endpoint(
                        type="workload", namespace="shop", name=f"c{index}", kind="Deployment"
                    ),
                    server=Endpoint(
                        type="workload", namespace="db", name="pg", kind="StatefulSet", service="pg"
                    ),
                    ports=(5432,),
                    sources=("socket-client", "socket-server"),
                    first_seen=1.0,
                    last_seen=10.0 + step * 60,
                    count=1 + step,
                    self_edge=index == 0,
                )
            )
    return result


async def dump(dsn: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    connection = await asyncpg.connect(dsn)
    try:
        state = await connection.fetch(f"SELECT * FROM {schema.EDGES_TABLE} ORDER BY edge_id")
        history = await connection.fetch(f"SELECT * FROM {schema.EVENTS_TABLE} ORDER BY event_key")
        return [tuple(r) for r in state], [tuple(r) for r in history]
    finally:
        await connection.close()


async def test_the_corpus_round_trips_through_postgresql(
    edges_topic, dsn: str, corpus_edges
) -> None:
    await edges_topic.produce(corpus_edges)
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-corpus")
    assert await load_edges(dsn) == EdgeBook().apply_all(map(Change.of, corpus_edges)).edges()


async def test_global_edges_keep_each_sides_cluster(edges_topic, dsn: str) -> None:
    world = load_jsonl("global-edges", Edge)
    await edges_topic.produce(world)
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-global")
    assert await load_edges(dsn) == sorted(world, key=lambda edge: edge.edge_id)
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            f"SELECT client_cluster, server_cluster FROM {schema.EDGES_TABLE} WHERE edge_id = 'g02'"
        )
    finally:
        await connection.close()
    assert tuple(row) == ("east", "west")


async def test_udp_ports_are_stored_apart_from_tcp_ports(edges_topic, dsn: str) -> None:
    edge = Edge(
        edge_id="u1",
        event="new",
        cluster="c1",
        client=Endpoint(type="workload", namespace="shop", name="web"),
        server=Endpoint(type="workload", namespace="obs", name="statsd"),
        ports=(9102,),
        udp_ports=(8125, 8126),
        first_seen=1.0,
        last_seen=2.0,
    )
    await edges_topic.produce([edge])
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-udp")
    assert await load_edges(dsn) == [edge]


async def test_health_is_stored_as_jsonb_and_read_back(edges_topic, dsn: str) -> None:
    lately = FlowHealth(opened=4, closed=4, failed=2, resets=1, bytes_sent=310)
    edge = Edge(
        edge_id="h1",
        event="refresh",
        cluster="c1",
        client=Endpoint(type="workload", namespace="shop", name="web"),
        server=Endpoint(type="workload", namespace="shop", name="api"),
        ports=(8080,),
        first_seen=1.0,
        last_seen=2.0,
        health=lately,
        health_total=lately.plus(FlowHealth(opened=100, closed=100)),
    )
    await edges_topic.produce([edge])
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-health")
    assert await load_edges(dsn) == [edge]
    connection = await asyncpg.connect(dsn)
    try:
        failed = await connection.fetchval(
            "SELECT (health->>'failed')::int FROM callmap_edges WHERE edge_id = 'h1'"
        )
    finally:
        await connection.close()
    assert failed == 2  # queryable in SQL, as JSONB


async def test_round_trips_and_retransmits_go_through_jsonb_unchanged(
    edges_topic, dsn: str
) -> None:
    rtt = RttSamples.of(1100, 1100, 240_000)
    edge = Edge(
        edge_id="r1",
        event="refresh",
        cluster="c1",
        client=Endpoint(type="workload", namespace="shop", name="web"),
        server=Endpoint(type="workload", namespace="shop", name="api"),
        ports=(8080,),
        first_seen=1.0,
        last_seen=2.0,
        health=FlowHealth(opened=3, retransmits=2, rtt=rtt),
        health_total=FlowHealth(opened=30, retransmits=9, rtt=rtt.plus(rtt)),
    )
    await edges_topic.produce([edge])
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-rtt")
    (back,) = [e for e in await load_edges(dsn) if e.edge_id == "r1"]
    assert back == edge  # buckets and all: the same quantiles come out
    assert back.health is not None and back.health.rtt is not None
    assert back.health.rtt.quantile_us(0.99) == rtt.quantile_us(0.99)
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT (health->>'retransmits')::int AS retransmits,"
            " (health_total->'rtt'->>'samples')::int AS samples"
            " FROM callmap_edges WHERE edge_id = 'r1'"
        )
    finally:
        await connection.close()
    assert (row["retransmits"], row["samples"]) == (2, 6)


async def test_migrations_run_once_even_when_replicas_start_together(dsn: str) -> None:
    connections = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        ran = await asyncio.gather(*(migrate(c) for c in connections))
        assert sorted(version for versions in ran for version in versions) == [1, 2, 3, 4, 5]
    finally:
        for connection in connections:
            await connection.close()


async def test_a_crash_between_write_and_commit_then_replay_ends_identical(
    edges_topic, postgres, dsn: str
) -> None:
    produced = events(40)
    await edges_topic.produce(produced)
    clean = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await admin.execute(f"CREATE DATABASE {clean}")
    await admin.close()
    await edges_topic.run_to_end(PostgresSink(postgres.dsn(clean)), "pg-clean")

    await edges_topic.crash_after_flush(PostgresSink(dsn), "pg-crash", len(produced))
    replay = PostgresSink(dsn)
    await edges_topic.run_to_end(replay, "pg-crash")
    assert replay.stats.received == len(produced)
    assert await dump(dsn) == await dump(postgres.dsn(clean))


async def test_the_server_down_for_a_while_loses_nothing(edges_topic, postgres, dsn: str) -> None:
    if not hasattr(postgres, "data"):
        pytest.skip("the containerised server is not stopped and started by the test")
    sink = PostgresSink(dsn, connect_timeout=2)
    runner = edges_topic.runner(sink, "pg-outage")
    await runner.start()
    try:
        await asyncio.to_thread(postgres.stop)
        produced = events(20)
        await edges_topic.produce(produced)
        # Run only now: a runner started on an empty topic is caught up at once, and
        # could return before the server was even down.
        task = asyncio.create_task(runner.run(until_caught_up=True))
        while sink.stats.retried < len(produced):
            assert not task.done()
            await asyncio.sleep(0.05)
        assert not sink.stats.target_up
    finally:
        await asyncio.to_thread(postgres.start)
    await asyncio.wait_for(task, 60)
    await runner.close()
    assert await load_edges(dsn) == EdgeBook().apply_all(map(Change.of, produced)).edges()
    assert sink.stats.written == len(produced)


async def test_wrong_credentials_are_permanent(postgres) -> None:
    with pytest.raises(PermanentError, match="password"):
        await PostgresSink(postgres.dsn().replace(postgres.password, "wrong")).open()


async def test_callmap_list_reads_the_map_from_postgresql(
    edges_topic, dsn: str, corpus_edges
) -> None:
    await edges_topic.produce(corpus_edges)
    await edges_topic.run_to_end(PostgresSink(dsn), "pg-list")
    result = await asyncio.to_thread(
        CliRunner().invoke, list_command, ["--from", dsn, "--namespace", "finance"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ledger in namespace finance calls:\n")
