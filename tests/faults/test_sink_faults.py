"""A sink killed and restarted while edges stream in: no row lost, none doubled, in
SQLite and in PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from helpers.faultruns import FaultRow

from callmap.broker import ensure_topics, make_producer
from callmap.config import Settings
from callmap.wire import EDGES, Edge, Endpoint, encode

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

EDGES_TOTAL = 20_000
RATE = 2_000  # edges a second, each first new, then refreshed once
KILLS = 5
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def edge(cluster: str, n: int, event: str) -> Edge:
    client = Endpoint(type="workload", namespace="shop", name=f"client{n}", kind="Deployment")
    server = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
    now = time.time()
    return Edge(
        edge_id=f"{cluster}-{n:06d}",
        event=event,  # type: ignore[arg-type]
        cluster=cluster,
        client=client,
        server=server,
        ports=(7070,),
        sources=("socket-client",),
        first_seen=now,
        last_seen=now,
        count=1 if event == "new" else 2,
    )


async def stream_edges(settings: Settings, cluster: str) -> int:
    """Each edge ``new``, and ``refresh`` a moment later, at :data:`RATE`; records sent."""
    producer = make_producer(settings.kafka)
    await producer.start()
    sent, step = 0, RATE // 10
    try:
        for first in range(0, EDGES_TOTAL + step, step):
            for n in range(first, min(first + step, EDGES_TOTAL)):
                await producer.send(
                    EDGES.name, encode(edge(cluster, n, "new")), key=f"{cluster}-{n:06d}".encode()
                )
                sent += 1
            for n in range(max(0, first - step), min(first, EDGES_TOTAL)):
                await producer.send(
                    EDGES.name,
                    encode(edge(cluster, n, "refresh")),
                    key=f"{cluster}-{n:06d}".encode(),
                )
                sent += 1
            await asyncio.sleep(0.1)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def start_sink(settings: Settings, target: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers}
    options = ["--flush-interval", "0.2", "--metrics-port", "0", "--group", f"faults-{log.stem}"]
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "callmap", "sink", *target, *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


ROWS_SQL = "SELECT count(*) FROM callmap_edges WHERE cluster = {p}"
NEWS_SQL = (
    "SELECT count(*), coalesce(sum(CASE WHEN c > 1 THEN 1 ELSE 0 END), 0) FROM"
    " (SELECT count(*) AS c FROM callmap_edge_events WHERE event = 'new' AND edge_id LIKE {p}"
    " GROUP BY edge_id) AS per_edge"
)


async def counts(target: list[str], cluster: str) -> tuple[int, int, int]:
    """Rows of the cluster's edges, edges with a ``new`` event, and edges with more
    than one, in the sink's database."""
    try:
        if target[0] == "sqlite":
            with sqlite3.connect(target[2], timeout=10) as db:
                (rows,) = db.execute(ROWS_SQL.format(p="?"), (cluster,)).fetchone()
                news, doubled = db.execute(NEWS_SQL.format(p="?"), (f"{cluster}-%",)).fetchone()
            return rows, news, doubled
        connection = await asyncpg.connect(target[2])
        try:
            rows = await connection.fetchval(ROWS_SQL.format(p="$1"), cluster)
            record = await connection.fetchrow(NEWS_SQL.format(p="$1"), f"{cluster}-%")
            return rows, record[0], record[1]
        finally:
            await connection.close()
    except (sqlite3.OperationalError, asyncpg.UndefinedTableError):  # no schema yet
        return 0, 0, 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_sink_killed_5_times(
    settings: Settings,
    tmp_path: Path,
    report: Callable[[FaultRow], None],
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    seed = time.time_ns()
    rng, cluster = random.Random(seed), f"sink-{seed % 10**8}"
    await ensure_topics(settings.kafka, settings.topics, [EDGES])
    if kind == "sqlite":
        target = ["sqlite", "--path", str(tmp_path / "edges.db")]
    else:
        server = request.getfixturevalue("postgres")
        database = f"faults_{seed % 10**8}"
        connection = await asyncpg.connect(server.dsn())
        await connection.execute(f"CREATE DATABASE {database}")
        await connection.close()
        target = ["postgres", "--dsn", server.dsn(database)]
    log = tmp_path / f"sink-{kind}.log"
    sink = start_sink(settings, target, log)
    try:
        streaming = asyncio.create_task(stream_edges(settings, cluster))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            sink.send_signal(signal.SIGKILL)
            sink.wait(timeout=10)
            sink = start_sink(settings, target, log)
        sent = await streaming
        streamed = time.monotonic()
        deadline, recovery = streamed + 120, None
        while time.monotonic() < deadline:
            rows, news, doubled = await counts(target, cluster)
            if rows >= EDGES_TOTAL and news >= EDGES_TOTAL:
                recovery = time.monotonic() - streamed
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # anything doubled would land by now
        rows, news, doubled = await counts(target, cluster)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
    report(
        FaultRow(
            scenario=f"{NAMES[kind]} sink SIGKILL x{KILLS} while edges stream in",
            load=f"{RATE:,} new edges/s, each refreshed once",
            records_in=sent,
            expected=EDGES_TOTAL,
            seen=rows,
            lost=EDGES_TOTAL - rows,
            doubled=doubled,
            recovery=recovery,
        )
    )
    assert rows == EDGES_TOTAL, log.read_text()[-2000:]
    assert news == EDGES_TOTAL and doubled == 0
