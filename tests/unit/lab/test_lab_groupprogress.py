"""The rule of a worker that keeps up: its committed offsets reached its inputs'
end offsets of a while ago."""

from __future__ import annotations

from aiokafka import TopicPartition

from lab.groupprogress import caught_up, input_topics

SOCKETS_0 = TopicPartition("callmap.sockets.v1", 0)
SOCKETS_1 = TopicPartition("callmap.sockets.v1", 1)


def test_committed_at_or_past_the_ends_of_then_is_caught_up() -> None:
    assert caught_up({SOCKETS_0: 10, SOCKETS_1: 7}, {SOCKETS_0: 10, SOCKETS_1: 5})


def test_one_partition_behind_is_not() -> None:
    assert not caught_up({SOCKETS_0: 10, SOCKETS_1: 4}, {SOCKETS_0: 10, SOCKETS_1: 5})


def test_a_partition_never_committed_counts_as_offset_zero() -> None:
    assert caught_up({SOCKETS_0: 10}, {SOCKETS_0: 10, SOCKETS_1: 0})
    assert not caught_up({SOCKETS_0: 10}, {SOCKETS_0: 10, SOCKETS_1: 1})


def test_the_inputs_are_the_raw_topics_and_the_apps_sightings_not_its_pending() -> None:
    topics = input_topics("callmap-lab-shop")
    assert "callmap-lab-shop.sightings.v1" in topics
    assert "callmap.dns.v1" in topics and "callmap.sockets.v1" in topics
    assert not any("pending" in t for t in topics)
