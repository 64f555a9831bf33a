"""The SQLite sink on a real broker: the map and its history, crash and replay,
a locked database, and messages that do not decode."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path

import msgspec
import pytest
from helpers.sinkcorpus import load_jsonl

from callmap.wire import DeadLetter, Edge, Endpoint
from sinks.changes import Change
from sinks.lifecycle import EdgeBook
from sinks.maps.readers import read_compacted
from sinks.service.destinations.sqlite import SqliteSink, load_edges
from sinks.service.formats import sqlschema as schema

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


def edges(count: int, cluster: str = "test") -> list[Edge]:
    """``count`` lifecycle events over count // 3 edges: new, refresh, then expired."""
    result = []
    for step, event in enumerate(("new", "refresh", "expired")):
        for index in range(count // 3):
            result.append(
                Edge(
                    edge_id=f"edge-{index}",
                    event=event,  # type: ignore[arg-type]
                    cluster=cluster,
                    client=Endpoint(
                        type="workload", namespace="shop", name=f"c{index}", kind="Deployment"
                    ),
                    server=Endpoint(type="external", dns_name=f"s{index}.example.org"),
                    ports=(443,),
                    sources=("dns",),
                    first_seen=1.0,
                    last_seen=10.0 + step * 60,
                    count=1 + step,
                )
            )
    return result


def dump(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    connection = sqlite3.connect(path)
    try:
        state = connection.execute(f"SELECT * FROM {schema.EDGES_TABLE} ORDER BY edge_id")
        history = connection.execute(f"SELECT * FROM {schema.EVENTS_TABLE} ORDER BY event_key")
        return [tuple(r) for r in state], [tuple(r) for r in history]
    finally:
        connection.close()


async def test_the_map_and_its_history_land_in_sqlite(
    edges_topic, tmp_path: Path, corpus_edges
) -> None:
    changes = [*corpus_edges, Change(corpus_edges[0].edge_id)]  # the last one deletes an edge
    await edges_topic.produce(changes)
    sink = SqliteSink(tmp_path / "map.db")
    runner = await edges_topic.run_to_end(sink, "sqlite-map")
    expected = EdgeBook().apply_all(Change.of(e) if isinstance(e, Edge) else e for e in changes)
    assert await load_edges(tmp_path / "map.db") == expected.edges()
    _, history = dump(tmp_path / "map.db")
    assert len(history) == len(corpus_edges)
    assert runner.stats.written == len(changes) and runner.stats.commits >= 1


async def test_one_clusters_global_edges_with_each_sides_cluster(
    edges_topic, tmp_path: Path
) -> None:
    world = load_jsonl("global-edges", Edge)
    await edges_topic.produce(world)
    sink = SqliteSink(tmp_path / "west.db")
    await edges_topic.run_to_end(sink, "sqlite-west", clusters=frozenset({"west"}))
    stored = await load_edges(tmp_path / "west.db")
    # east's calls into west, west's own, west's calls out; east's own are skipped
    assert [e.edge_id for e in stored] == ["g02", "g03", "g06", "g07"]
    assert stored == [e for e in world if e.edge_id in {"g02", "g03", "g06", "g07"}]
    assert sink.stats.skipped["other_cluster"] == 3
    connection = sqlite3.connect(tmp_path / "west.db")
    row = connection.execute(
        f"SELECT client_cluster, server_cluster FROM {schema.EDGES_TABLE} WHERE edge_id = 'g07'"
    ).fetchone()
    connection.close()
    assert row == ("west", "east")


async def test_a_crash_between_write_and_commit_then_replay_ends_identical(
    edges_topic, tmp_path: Path
) -> None:
    events = edges(90)
    await edges_topic.produce(events)
    await edges_topic.run_to_end(SqliteSink(tmp_path / "clean.db"), "sqlite-clean")

    crashed = tmp_path / "crashed.db"
    await edges_topic.crash_after_flush(SqliteSink(crashed), "sqlite-crash", len(events))
    replay = SqliteSink(crashed)
    await edges_topic.run_to_end(replay, "sqlite-crash")
    assert replay.stats.received == len(events)  # nothing was committed: all of it came again
    assert dump(crashed) == dump(tmp_path / "clean.db")


async def test_a_locked_database_for_a_while_loses_nothing(edges_topic, tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    sink = SqliteSink(path, busy_timeout=0.05)
    runner = edges_topic.runner(sink, "sqlite-busy")
    await runner.start()  # the sink is up and has migrated the database
    task = asyncio.create_task(runner.run(until_caught_up=True))
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database for a while
    events = edges(30)
    await edges_topic.produce(events)
    while sink.stats.retried < 2 * len(events):
        assert not task.done()
        await asyncio.sleep(0.05)
    assert not sink.stats.target_up
    holder.execute("ROLLBACK")
    holder.close()
    await asyncio.wait_for(task, 30)
    await runner.close()
    expected = EdgeBook().apply_all(map(Change.of, events)).edges()
    assert await load_edges(path) == expected
    assert sink.stats.written == len(events) and sink.stats.target_up


async def test_undecodable_messages_are_counted_and_dead_lettered(
    edges_topic, tmp_path: Path
) -> None:
    good = edges(3)
    await edges_topic.produce([good[0], (b"k", b"not json"), (b"k2", b'{"v": 7}'), good[1]])
    sink = SqliteSink(tmp_path / "map.db")
    await edges_topic.run_to_end(sink, "sqlite-bad")
    assert sink.stats.failed["undecodable"] == 2 and sink.stats.written == 2
    letters = [
        msgspec.json.decode(value, type=DeadLetter)
        for _, value in await read_compacted(edges_topic.settings.kafka, edges_topic.dlq)
        if value is not None
    ]
    assert sorted(base64.b64decode(letter.payload_b64) for letter in letters) == [
        b"not json",
        b'{"v": 7}',
    ]
    assert {letter.stage for letter in letters} == {"sink-sqlite"}
    assert any("schema version 7" in letter.error for letter in letters)
