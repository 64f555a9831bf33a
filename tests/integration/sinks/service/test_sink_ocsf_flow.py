"""The OCSF sink to a Kafka topic a SIEM pipeline reads: events in lifecycle order,
no duplicates after a crash, and a topic that appears late."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

import pytest
from helpers.sinkkafka import create_topics

from callmap.wire import EDGES
from sinks.changes import event_key
from sinks.maps.readers import read_compacted
from sinks.service.destinations.ocsfkafka import OcsfKafkaSink
from sinks.service.journal import OffsetJournal

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


async def siem_topic(settings, create: bool = True):  # type: ignore[no-untyped-def]
    spec = dataclasses.replace(
        EDGES, name=f"test.siem.ocsf.{uuid.uuid4().hex[:10]}", cleanup="delete"
    )
    if create:
        await create_topics(settings, [spec])
    return spec


async def test_ocsf_events_reach_the_topic_keyed_by_edge(edges_topic, corpus_edges) -> None:
    target = await siem_topic(edges_topic.settings)
    await edges_topic.produce(corpus_edges)
    sink = OcsfKafkaSink(edges_topic.settings.kafka, target.name)
    await edges_topic.run_to_end(sink, "ocsf-topic")
    records = await read_compacted(edges_topic.settings.kafka, target)
    events = {
        json.loads(value)["metadata"]["uid"]: (key, json.loads(value)) for key, value in records
    }
    assert set(events) == {event_key(edge) for edge in corpus_edges}
    for key, event in events.values():
        assert key == event["metadata"]["correlation_uid"].encode() and event["class_uid"] == 4001


async def test_a_crash_between_send_and_commit_sends_nothing_twice(
    edges_topic, corpus_edges, tmp_path: Path
) -> None:
    target = await siem_topic(edges_topic.settings)
    await edges_topic.produce(corpus_edges)
    state = tmp_path / "ocsf.journal.json"
    sink = OcsfKafkaSink(edges_topic.settings.kafka, target.name, journal=OffsetJournal(state))
    await edges_topic.crash_after_flush(sink, "ocsf-crash", len(corpus_edges))
    replay = OcsfKafkaSink(edges_topic.settings.kafka, target.name, journal=OffsetJournal(state))
    await edges_topic.run_to_end(replay, "ocsf-crash")
    assert replay.stats.skipped["already_written"] == len(corpus_edges)
    records = await read_compacted(edges_topic.settings.kafka, target)
    assert len(records) == len(corpus_edges)


async def test_a_topic_that_appears_late_loses_nothing(edges_topic, corpus_edges) -> None:
    target = await siem_topic(edges_topic.settings, create=False)
    sink = OcsfKafkaSink(edges_topic.settings.kafka, target.name, timeout=1)
    runner = edges_topic.runner(sink, "ocsf-late")
    await runner.start()
    task = asyncio.create_task(runner.run(until_caught_up=True))
    await edges_topic.produce(corpus_edges)
    while sink.stats.retried == 0:
        assert not task.done()
        await asyncio.sleep(0.05)
    await create_topics(edges_topic.settings, [target])
    await asyncio.wait_for(task, 60)
    await runner.close()
    records = await read_compacted(edges_topic.settings.kafka, target)
    assert {json.loads(v)["metadata"]["uid"] for _, v in records} == {
        event_key(edge) for edge in corpus_edges
    }
