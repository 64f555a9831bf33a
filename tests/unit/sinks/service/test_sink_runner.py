"""The sink runner's reading of its consumer's progress, without a broker."""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from callmap.config import load_settings
from sinks.service.destinations.linefile import LineFileSink
from sinks.service.runner import RunnerOptions, SinkRunner

EDGES_0, EDGES_1 = TopicPartition("callmap.edges.v1", 0), TopicPartition("callmap.edges.v1", 1)


class _Consumer:
    """A consumer of two partitions read to their ends (10 each); ``taken`` is the
    one a rebalance takes away between the assignment and its position."""

    def __init__(self, taken: TopicPartition | None = None) -> None:
        self.taken = taken

    def assignment(self) -> set[TopicPartition]:
        return {EDGES_0, EDGES_1}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 10)

    async def position(self, partition: TopicPartition) -> int:
        if partition == self.taken:
            raise IllegalStateError(f"Partition {partition} is not assigned")
        return 10


def _runner(tmp_path: Path, consumer: _Consumer) -> SinkRunner:
    kafka = load_settings({"CALLMAP_KAFKA_BOOTSTRAP": "127.0.0.1:9"}).kafka
    runner = SinkRunner(kafka, LineFileSink(tmp_path), RunnerOptions(group_id="t"))
    runner._consumer = consumer
    return runner


async def test_partitions_read_to_their_ends_are_caught_up(tmp_path: Path) -> None:
    assert await _runner(tmp_path, _Consumer()).caught_up()


async def test_a_partition_a_rebalance_took_away_is_not_caught_up_yet(tmp_path: Path) -> None:
    """Looked at again at the next poll, instead of the error stopping ``--once``."""
    assert not await _runner(tmp_path, _Consumer(taken=EDGES_1)).caught_up()
