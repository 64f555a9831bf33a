"""The stream refuses to start when a node's events would reach different workers."""

from __future__ import annotations

import pytest

from callmap.broker import TopicState
from callmap.errors import ConfigError
from streams.cli import check_co_partitioned

NAMES = ["callmap.dns.v1", "callmap.sockets.v1", "callmap-streams.pending.v1"]


def states(*counts: int) -> list[TopicState]:
    found = [TopicState(name, count, {}) for name, count in zip(NAMES, counts, strict=True)]
    return [*found, TopicState("callmap.edges.v1", 1, {})]  # not keyed by node: any count


def test_topics_keyed_by_node_with_one_partition_count_are_accepted() -> None:
    check_co_partitioned(states(6, 6, 6), NAMES)


@pytest.mark.parametrize("counts", [(6, 3, 6), (6, 6, 12)])
def test_different_partition_counts_stop_the_start_with_what_to_do(
    counts: tuple[int, int, int],
) -> None:
    with pytest.raises(ConfigError) as error:
        check_co_partitioned(states(*counts), NAMES)
    message = str(error.value)
    assert "callmap.dns.v1 has 6" in message
    assert f"--partitions {max(counts)}" in message
