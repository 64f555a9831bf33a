"""Caps on a real worker: a client past its edge cap and a batch past the record cap go
to the dead-letter topic with their reason; everything else is mapped."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
from helpers.streamkit import (
    Reader,
    Worker,
    conn,
    names,
    of_cluster,
    pod,
    publish,
)

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import DLQ, EDGES, SIGHTINGS, SOCKETS, DeadLetter
from callmap.wire.topics import for_app

pytestmark = pytest.mark.kafka


async def test_caps_dead_letter_what_they_stop_and_map_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    cluster, app_id = f"c-{uuid.uuid4().hex[:8]}", f"streams-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, settings.topics)
    edges = await Reader(settings, EDGES.name).mark()
    dlq = await Reader(settings, DLQ.name).mark()
    servers = [pod(cluster, f"server{n}", f"10.5.0.{n}") for n in range(1, 5)]
    await publish(settings, [pod(cluster, "crawler", "10.5.1.1"), *servers])
    worker = Worker(
        settings, app_id, tmp_path, "--max-edges-per-client", "2", "--max-batch-records", "5"
    )
    try:
        worker.wait_ready()
        for n in range(1, 5):  # one batch each: the first two servers fit the cap
            await publish(
                settings, [conn(cluster, "10.5.1.1", 40000 + n, f"10.5.0.{n}", 80, "client")]
            )
        too_many = [
            conn(cluster, "10.5.1.1", 41000 + n, "10.5.0.1", 80, "client") for n in range(6)
        ]
        await publish(settings, too_many)  # six records in one batch: over the record cap
        letters = await dlq.read(
            lambda r: isinstance(r, DeadLetter) and r.topic in (SOCKETS.name, sightings(app_id)),
            until=lambda f: len(f) >= 2,
            settle=3,
        )
        found = await edges.read(of_cluster(cluster), until=lambda f: len(f) >= 2, settle=3)
    finally:
        worker.stop()
    news = Counter(names(e) for e in found if e.event == "new")
    assert news == {("crawler", "server1"): 1, ("crawler", "server2"): 1}, news
    reasons = sorted((letter.reason, letter.topic) for letter in letters)
    assert reasons == [("edge_cap", sightings(app_id)), ("oversized", SOCKETS.name)]
    (capped,) = [letter for letter in letters if letter.reason == "edge_cap"]
    assert "crawler" in capped.error and "--max-edges-per-client" in capped.error


def sightings(app_id: str) -> str:
    return for_app(SIGHTINGS, app_id).name
