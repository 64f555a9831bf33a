"""The lab run's EdgeReader: one consumer for its life, from the topic's end at start."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from callmap.config import load_settings
from callmap.wire import EDGES, Edge, Endpoint, encode
from callmap.wire.records import EdgeEvent
from lab import edgereader
from lab.edgereader import EdgeReader

CLUSTER = "lab-abc123"
END = {TopicPartition(EDGES.name, 0): 7, TopicPartition(EDGES.name, 1): 3}


def edge(edge_id: str, event: EdgeEvent = "new", cluster: str = CLUSTER) -> bytes:
    return encode(
        Edge(
            edge_id=edge_id,
            event=event,
            cluster=cluster,
            client=Endpoint(type="workload", namespace="shop", name="web"),
            server=Endpoint(type="workload", namespace="shop", name="api"),
            first_seen=1.0,
            last_seen=2.0,
        )
    )


class FakeConsumer:
    """Hands out the batches it is given, one per ``getmany``; records what it was told."""

    def __init__(self, fail_on_end_offsets: bool = False) -> None:
        self.fail_on_end_offsets = fail_on_end_offsets
        self.batches: list[list[bytes]] = []
        self.started = self.stopped = 0
        self.assigned: list[TopicPartition] = []
        self.seeks: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.fail_on_end_offsets:
            raise RuntimeError("broker went away")
        return {tp: END[tp] for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        if not self.batches:
            return {}
        values = self.batches.pop(0)
        tp = TopicPartition(EDGES.name, 0)
        return {tp: [SimpleNamespace(value=value) for value in values]}


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> list[FakeConsumer]:
    made: list[FakeConsumer] = []

    def make_consumer(kafka: object) -> FakeConsumer:
        made.append(FakeConsumer())
        return made[-1]

    async def topic_partitions(kafka: object, names: list[str]) -> list[TopicPartition]:
        return [TopicPartition(name, p) for name in names for p in range(2)]

    monkeypatch.setattr(edgereader, "make_consumer", make_consumer)
    monkeypatch.setattr(edgereader, "topic_partitions", topic_partitions)
    return made


def reader() -> EdgeReader:
    return EdgeReader(load_settings({"CALLMAP_KAFKA_BOOTSTRAP": "kafka:9092"}), CLUSTER)


async def test_one_consumer_reads_from_where_the_topic_ended_at_start(
    consumers: list[FakeConsumer],
) -> None:
    edges = reader()
    await edges.start()
    (consumer,) = consumers
    consumer.batches = [[edge("e1")], [edge("e2")]]

    assert await edges.poll(0.01)
    assert await edges.poll(0.01) is False  # nothing new
    await edges.stop()

    assert len(consumers) == 1 and (consumer.started, consumer.stopped) == (1, 1)
    assert consumer.assigned == list(END) and consumer.seeks == END
    assert sorted(edges.edges) == ["e1", "e2"]


async def test_poll_reports_new_edges_and_expiry_changes_only(
    consumers: list[FakeConsumer],
) -> None:
    async with reader() as edges:
        consumer = consumers[0]
        consumer.batches = [[edge("e1")]]
        assert await edges.poll(0.01)
        consumer.batches = [[edge("e1", "refresh"), edge("e9", cluster="another-run")]]
        assert await edges.poll(0.01) is False
        consumer.batches = [[edge("e1", "expired")]]
        assert await edges.poll(0.01)
        consumer.batches = [[edge("e1", "expired")]]
        assert await edges.poll(0.01) is False
        consumer.batches = [[edge("e1", "refresh")]]
        assert await edges.poll(0.01)

    assert list(edges.edges) == ["e1"] and edges.edges["e1"].event == "refresh"


async def test_the_consumer_is_stopped_when_the_run_fails(consumers: list[FakeConsumer]) -> None:
    with pytest.raises(ZeroDivisionError):
        async with reader():
            raise ZeroDivisionError

    assert consumers[0].stopped == 1


async def test_a_failed_start_stops_its_consumer(
    consumers: list[FakeConsumer], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FakeConsumer(fail_on_end_offsets=True)
    monkeypatch.setattr(edgereader, "make_consumer", lambda kafka: failing)
    edges = reader()

    with pytest.raises(RuntimeError, match="broker went away"):
        await edges.start()

    assert failing.stopped == 1
    await edges.stop()  # nothing left to stop
    assert failing.stopped == 1


async def test_poll_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"before start"):
        await reader().poll(0.01)


async def test_the_reader_keeps_the_whole_map_and_each_edges_life(
    consumers: list[FakeConsumer],
) -> None:
    async with reader() as edges:
        consumer = consumers[0]
        consumer.batches = [[edge("e1"), edge("e2")]]
        await edges.poll(0.01)
        consumer.batches = [[edge("e1", "expired"), edge("e2", "new")]]  # e2 announced new twice
        await edges.poll(0.01)
        assert set(edges.seen) == {"e1", "e2"}  # an expired edge stays on the run's map
        assert set(edges.expired_at) == {"e1"}
        consumer.batches = [[edge("e1", "new")]]  # back after its expiry: new again, rightly
        await edges.poll(0.01)

    assert edges.expired_at == {} and edges.new_again == {"e2"}
