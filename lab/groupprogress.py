"""Whether the stream app has worked through what its inputs held a while ago.

A lab run ends once the map has not changed for a while. A stream worker
that stalls (a paused process, a transaction that hangs) leaves the map
unchanged too, and a run ending then reports a map the worker had not
finished: edges announced from their first DNS answer, say, without the
ports their sockets showed a second later. So a quiet map counts as settled
only while the worker keeps up: its consumer group's committed offsets on
the raw topics and on its sightings topic have reached the ends those
partitions had ``behind`` seconds earlier. Faust commits processed offsets
every few seconds, and the edge log acknowledges sightings only once the
transaction that announced their edges is committed, so a committed offset
is work whose edges are on the topic.

The pending topic is left out: its batches wait there for the grace period
by design.

:func:`caught_up` is the pure rule; :class:`GroupProgress` reads the offsets.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from callmap.broker import admin_client, make_consumer, topic_partitions
from callmap.config import KafkaSettings
from callmap.errors import PermanentError
from callmap.wire import DNS, SIGHTINGS, SOCKETS
from callmap.wire.topics import for_app

log = logging.getLogger(__name__)

BEHIND = 6.0
"""Seconds a healthy worker may trail its inputs: Faust's commit interval (2.8 s)
plus a poll, with room to spare."""

Offsets = Mapping[TopicPartition, int]


def caught_up(committed: Offsets, ends_then: Offsets) -> bool:
    """Whether every partition's committed offset reached its end offset of then
    (a partition the group never committed counts as at offset 0)."""
    return all(committed.get(tp, 0) >= end for tp, end in ends_then.items())


def input_topics(app_id: str) -> tuple[str, ...]:
    """The topics whose progress tells whether the stream app ``app_id`` keeps up."""
    return (DNS.name, SOCKETS.name, for_app(SIGHTINGS, app_id).name)


class GroupProgress:
    """The progress of one consumer group over its input topics; ``async with`` it."""

    def __init__(
        self, kafka: KafkaSettings, group: str, topics: Sequence[str], behind: float = BEHIND
    ) -> None:
        self._kafka = kafka
        self._group = group
        self._topics = tuple(topics)
        self._behind = behind
        self._ends: deque[tuple[float, Offsets]] = deque()  # (when, end offsets), oldest first
        self._stack = AsyncExitStack()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: Any = None
        self._partitions: list[TopicPartition] = []
        self.behind_now: int | None = None
        """Records the group had not committed at the last check, of those it should have;
        None until known."""

    async def __aenter__(self) -> GroupProgress:
        async with AsyncExitStack() as stack:
            self._admin = await stack.enter_async_context(admin_client(self._kafka))
            consumer = make_consumer(self._kafka)  # end offsets: the last stable ones
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            self._consumer = consumer
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._consumer = self._admin = None
        await self._stack.aclose()

    async def caught_up(self) -> bool:
        """Whether the group has committed what its inputs held ``behind`` seconds ago;
        False until this object has watched that long."""
        assert self._consumer is not None, "use GroupProgress with async with"
        now = time.monotonic()
        if not self._partitions:
            try:
                self._partitions = await topic_partitions(self._kafka, self._topics)
            except PermanentError:  # the stream app has not made its topics yet
                return False
        partitions = self._partitions
        self._ends.append((now, await self._consumer.end_offsets(partitions)))
        # The newest ends at least ``behind`` old are the baseline; older ones are done with.
        while len(self._ends) > 1 and now - self._ends[1][0] >= self._behind:
            self._ends.popleft()
        when, then = self._ends[0]
        if now - when < self._behind:
            return False
        try:
            committed = await self._committed()
        except KafkaError as exc:  # no coordinator yet, say: not known to keep up
            log.info("committed offsets of %s not readable: %s", self._group, exc)
            return False
        self.behind_now = sum(max(0, end - committed.get(tp, 0)) for tp, end in then.items())
        return caught_up(committed, then)

    def describe(self) -> str:
        """The last check, for a progress line."""
        if self.behind_now is None:
            return "stream worker's progress not known yet"
        return f"stream worker {self.behind_now} records behind"

    async def _committed(self) -> dict[TopicPartition, int]:
        answer: Mapping[TopicPartition, Any] = await self._admin.list_consumer_group_offsets(
            self._group
        )
        return {tp: meta.offset for tp, meta in answer.items() if meta.offset >= 0}
