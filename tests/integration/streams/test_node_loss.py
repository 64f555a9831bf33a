"""The stream workers expose each node's capture loss, read from the stats topic."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers.streamkit import Reader, Worker, dead_letters_from

from callmap.broker import ensure_topics, make_producer
from callmap.config import Settings
from callmap.wire import (
    DLQ,
    DROP_OVERFLOW,
    DROP_TOO_OLD,
    STATS,
    CaptureStats,
    StageStats,
    encode,
)

pytestmark = pytest.mark.kafka


def stats(cluster: str, boot: str, seq: int, dropped: dict[str, int]) -> CaptureStats:
    return CaptureStats(
        cluster=cluster,
        node="node-a",
        ts=time.time(),
        interval=10.0,
        boot_id=boot,
        seq=seq,
        totals={"publish": StageStats(seen=1000, emitted=900, dropped=dropped)},
    )


def lost(worker: Worker, cluster: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    pattern = (
        rf'^callmap_capture_lost_records{{cluster="{cluster}",node="node-a",'
        rf'reason="([a-z_]+)"}} ([0-9.e+]+)$'
    )
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE) if float(m[2])}


async def test_a_nodes_loss_is_summed_over_its_agent_processes(
    settings: Settings, tmp_path: Path
) -> None:
    cluster = f"c-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, settings.topics)
    dlq = await Reader(settings, DLQ.name).mark()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for record in (
            stats(cluster, "first", 1, {DROP_OVERFLOW: 10}),
            stats(cluster, "first", 2, {DROP_OVERFLOW: 25, "unchanged": 99}),
            stats(cluster, "second", 1, {DROP_TOO_OLD: 4}),
        ):
            await producer.send_and_wait(STATS.name, encode(record), key=b"node-a")
        await producer.send_and_wait(STATS.name, b"\x00garbage", key=b"node-a")
    finally:
        await producer.stop()
    worker = Worker(settings, f"streams-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not lost(worker, cluster):
            time.sleep(0.5)
        assert lost(worker, cluster) == {DROP_OVERFLOW: 25.0, DROP_TOO_OLD: 4.0}
    finally:
        worker.stop()
    letters = await dlq.read(dead_letters_from(STATS.name), until=lambda f: len(f) >= 1)
    assert [letter.topic for letter in letters] == [STATS.name]
