"""The SQL schema on SQLite: migrations, guarded upserts, history, idempotent replays."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from callmap.errors import PermanentError, TemporaryError
from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.changes import Change
from sinks.service.destinations.sqlite import (
    SqliteSink,
    connect,
    load_edges,
    migrate,
    read_edges,
    write_batch,
)
from sinks.service.formats import sqlschema as schema


def dump(
    connection: sqlite3.Connection,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    edges = connection.execute(f"SELECT * FROM {schema.EDGES_TABLE} ORDER BY edge_id").fetchall()
    events = connection.execute(
        f"SELECT * FROM {schema.EVENTS_TABLE} ORDER BY event_key"
    ).fetchall()
    return [tuple(row) for row in edges], [tuple(row) for row in events]


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    connection = connect(tmp_path / "map.db", busy_timeout=0.1)
    migrate(connection)
    return connection


def test_migrations_run_once_and_in_order(tmp_path: Path) -> None:
    connection = connect(tmp_path / "m.db", busy_timeout=0.1)
    assert migrate(connection) == [1, 2, 3, 4, 5]
    assert migrate(connection) == []
    versions = connection.execute(f"SELECT version FROM {schema.MIGRATIONS_TABLE}").fetchall()
    assert [row[0] for row in versions] == [1, 2, 3, 4, 5]


def test_a_database_at_version_one_is_brought_up_to_date(tmp_path: Path) -> None:
    connection = connect(tmp_path / "old.db", busy_timeout=0.1)
    connection.execute(schema.migrations_table(schema.SQLITE))
    for statement in schema.MIGRATIONS[0].statements(schema.SQLITE):
        connection.execute(statement)
    connection.execute(schema.record_migration(schema.SQLITE), (1, "old", 0.0))
    assert migrate(connection) == [2, 3, 4, 5]


def stored_at_version(path: Path, version: int, edge: Edge, later: set[str]) -> sqlite3.Connection:
    """A database at schema ``version`` holding ``edge`` without the ``later`` columns
    (which must be the last ones), as the code of that version stored it."""
    connection = connect(path, busy_timeout=0.1)
    connection.execute(schema.migrations_table(schema.SQLITE))
    for migration in schema.MIGRATIONS[:version]:
        for statement in migration.statements(schema.SQLITE):
            connection.execute(statement)
        connection.execute(schema.record_migration(schema.SQLITE), (migration.version, "old", 0.0))
    columns = [column for column, _ in schema.EDGE_COLUMNS if column not in later]
    row = schema.edge_row(edge, schema.SQLITE)[: len(columns)]
    connection.execute(
        f"INSERT INTO {schema.EDGES_TABLE} ({', '.join(columns)}) "
        f"VALUES ({schema.SQLITE.params(len(columns))})",
        row,
    )
    return connection


def test_edges_stored_before_the_cluster_columns_read_back_after_them(
    tmp_path: Path, corpus
) -> None:
    edge = without_health(corpus.edges[0])
    later = {
        column
        for column, _ in (*schema.CLUSTER_COLUMNS, *schema.UDP_COLUMNS, *schema.HEALTH_COLUMNS)
    }
    connection = stored_at_version(tmp_path / "v2.db", 2, edge, later)
    assert migrate(connection) == [3, 4, 5]
    assert read_edges(connection) == [edge]


def test_udp_ports_are_stored_apart_from_tcp_ports_and_read_back(
    db: sqlite3.Connection,
) -> None:
    edge = Edge(
        edge_id="u1",
        event="new",
        cluster="c1",
        client=Endpoint(type="workload", namespace="shop", name="web"),
        server=Endpoint(type="workload", namespace="obs", name="statsd"),
        ports=(9102,),
        udp_ports=(8125,),
        first_seen=1.0,
        last_seen=2.0,
    )
    write_batch(db, [Change.of(edge)])
    assert read_edges(db) == [edge]
    row = db.execute(f"SELECT ports, udp_ports FROM {schema.EDGES_TABLE}").fetchone()
    assert tuple(row) == ("[9102]", "[8125]")


def test_edges_stored_before_the_udp_column_read_back_without_udp_ports(
    tmp_path: Path, corpus
) -> None:
    edge = without_health(corpus.edges[0])
    later = {"udp_ports", "health", "health_total"}
    connection = stored_at_version(tmp_path / "v3.db", 3, edge, later)
    assert migrate(connection) == [4, 5]
    assert read_edges(connection) == [edge] and edge.udp_ports == ()


def without_health(edge: Edge) -> Edge:
    return msgspec.structs.replace(edge, health=None, health_total=None)


def test_health_is_stored_as_json_and_read_back(db: sqlite3.Connection, corpus) -> None:
    edge = corpus.edges[0]
    assert edge.health is not None and edge.health.failed == 3  # the corpus's failing call
    write_batch(db, [Change.of(edge)])
    assert read_edges(db) == [edge]
    row = db.execute(f"SELECT health FROM {schema.EDGES_TABLE}").fetchone()
    assert json.loads(row[0])["failed"] == 3


def test_round_trips_and_retransmits_are_stored_with_the_health_and_read_back(
    db: sqlite3.Connection, corpus
) -> None:
    rtt = RttSamples.of(1100, 1100, 240_000)
    edge = msgspec.structs.replace(
        corpus.edges[0],
        health=FlowHealth(opened=3, retransmits=2, rtt=rtt),
        health_total=FlowHealth(opened=9, retransmits=5, rtt=rtt.plus(rtt)),
    )
    write_batch(db, [Change.of(edge)])
    assert read_edges(db) == [edge]  # buckets and all: quantiles come out as they went in
    row = db.execute(f"SELECT health FROM {schema.EDGES_TABLE}").fetchone()
    assert json.loads(row[0])["retransmits"] == 2
    assert json.loads(row[0])["rtt"]["samples"] == 3


def test_edges_stored_before_the_health_columns_read_back_without_health(
    tmp_path: Path, corpus
) -> None:
    edge = corpus.edges[0]
    connection = stored_at_version(tmp_path / "v4.db", 4, edge, {"health", "health_total"})
    assert migrate(connection) == [5]
    assert read_edges(connection) == [without_health(edge)]


def test_global_edges_keep_each_sides_cluster(db: sqlite3.Connection) -> None:
    edge = Edge(
        edge_id="g1",
        event="new",
        cluster="east",
        client=Endpoint(type="workload", namespace="shop", name="web", cluster="east"),
        server=Endpoint(type="workload", namespace="shop", name="api", cluster="west"),
        first_seen=1.0,
        last_seen=2.0,
    )
    own = Edge(**{**_fields(edge), "edge_id": "o1", "client": Endpoint(type="apiserver")})
    write_batch(db, [Change.of(edge), Change.of(own)])
    assert read_edges(db) == [edge, own]
    rows = db.execute(
        f"SELECT edge_id, client_cluster, server_cluster FROM {schema.EDGES_TABLE} ORDER BY edge_id"
    ).fetchall()
    assert [tuple(row) for row in rows] == [("g1", "east", "west"), ("o1", None, "west")]


def test_a_database_from_newer_code_is_refused(tmp_path: Path) -> None:
    connection = connect(tmp_path / "new.db", busy_timeout=0.1)
    migrate(connection)
    connection.execute(schema.record_migration(schema.SQLITE), (99, "future", 0.0))
    with pytest.raises(ValueError, match="upgrade callmap"):
        migrate(connection)


def test_current_state_and_history(db: sqlite3.Connection, corpus) -> None:
    write_batch(db, [Change.of(edge) for edge in corpus.edges])
    assert read_edges(db) == sorted(corpus.edges, key=lambda e: e.edge_id)
    history = db.execute(f"SELECT count(*) FROM {schema.EVENTS_TABLE}").fetchone()[0]
    assert history == len(corpus.edges)


def test_replays_and_stale_events_change_nothing(db: sqlite3.Connection, corpus) -> None:
    edge = corpus.edges[1]
    newer = Edge(**{**_fields(edge), "event": "expired", "last_seen": edge.last_seen + 60})
    write_batch(db, [Change.of(edge), Change.of(newer)])
    before = dump(db)
    write_batch(db, [Change.of(edge)])  # a replay of the older event, alone
    write_batch(db, [Change.of(edge), Change.of(newer)])  # the whole batch again
    assert dump(db) == before
    assert read_edges(db) == [newer]


def test_tombstones_delete_the_current_state_but_keep_history(
    db: sqlite3.Connection, corpus
) -> None:
    edge = corpus.edges[0]
    write_batch(db, [Change.of(edge), Change(edge.edge_id)])
    edges, events = dump(db)
    assert edges == [] and len(events) == 1


async def test_a_locked_database_is_a_temporary_fault(tmp_path: Path, corpus) -> None:
    path = tmp_path / "locked.db"
    sink = SqliteSink(path, busy_timeout=0.1)
    await sink.open()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    sink.add(Change.of(corpus.edges[0]))
    with pytest.raises(TemporaryError, match="locked"):
        await sink.flush()
    holder.execute("ROLLBACK")
    await sink.flush()
    await sink.close()
    assert [e.edge_id for e in await load_edges(path)] == [corpus.edges[0].edge_id]


async def test_a_file_that_is_not_a_database_is_a_permanent_fault(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    sink = SqliteSink(path)
    with pytest.raises(PermanentError):
        await sink.open()
    await sink.close()


def _fields(edge: Edge) -> dict[str, object]:
    return {field: getattr(edge, field) for field in edge.__struct_fields__}
