"""``callmap sink`` as a process: it follows the edges topic, and SIGTERM makes it
flush, commit and exit cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from helpers.sinkkafka import create_topics

from callmap.broker import make_producer
from callmap.wire import EDGES, encode, message_key
from sinks.maps.cli import list_command
from sinks.service.formats import sqlschema as schema

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[4]


def stored(path: Path, cluster: str) -> int:
    if not path.exists():
        return 0
    connection = sqlite3.connect(path, timeout=5)
    try:
        query = f"SELECT count(*) FROM {schema.EDGES_TABLE} WHERE cluster = ?"
        return int(connection.execute(query, (cluster,)).fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    finally:
        connection.close()


async def test_the_sink_command_follows_the_topic_and_stops_on_sigterm(
    settings, kafka_bootstrap, corpus_edges, tmp_path: Path, monkeypatch
) -> None:
    cluster = f"c-{uuid.uuid4().hex[:8]}"  # the shared edges topic holds other tests' edges
    await create_topics(settings, [EDGES])
    database = tmp_path / "map.db"
    environment = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-c", "from sinks.service.cli import sink; sink()", "sqlite",
        "--path", str(database), "--group", f"cmd-{cluster}", "--metrics-port", "0",
        "--flush-interval", "0.2",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for edge in corpus_edges:
                moved = msgspec.structs.replace(
                    edge, cluster=cluster, edge_id=f"{cluster}-{edge.edge_id}"
                )
                await producer.send(EDGES.name, encode(moved), key=message_key(moved))
            await producer.flush()
        finally:
            await producer.stop()
        for _ in range(600):
            if stored(database, cluster) == len(corpus_edges):
                break
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            await asyncio.sleep(0.1)
        assert stored(database, cluster) == len(corpus_edges)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, errors.decode()
    assert "sqlite: received=" in errors.decode()

    monkeypatch.setenv("CALLMAP_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["--from", f"sqlite:///{database}", "--cluster", cluster, "-n", "finance"]
    listing = await asyncio.to_thread(CliRunner().invoke, list_command, args)
    assert listing.output.startswith("ledger in namespace finance calls:\n")


def test_a_sink_that_never_reaches_kafka_retries_then_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-c", "from sinks.service.cli import sink; sink()", "jsonl",
        "--dir", str(tmp_path / "out"), "--metrics-port", "0", "--start-timeout", "3",
    ]  # fmt: skip
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode != 0, result.stderr
    assert "start the edges consumer" in result.stderr and "retrying in" in result.stderr
    assert "Unclosed" not in result.stderr  # every failed attempt closed its consumer
