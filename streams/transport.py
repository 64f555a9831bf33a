"""Faust's Kafka transport with two repairs.

**No records lost on a seek back.** When Faust's flow stops in the middle of
a fetched batch (a rebalance, the end of table recovery), it drops the rest
of the batch and seeks every partition back to its committed offset, to read
the dropped records again. aiokafka's ``seek_to_committed`` leaves a
partition where it is when nothing (or offset 0) was committed for it, so
the dropped records of such a partition were lost for good: a backlog
produced while no worker ran, read by a restarted worker before its first
commit, came out of Kafka and never reached an agent. Here such partitions
go back to their beginning, as the consumer's reset policy (earliest) says:
the records are read again instead.

**No fetch held for 1.5 s.** Faust builds its consumer with
``fetch_max_wait_ms=1500``. A fetch names only the partitions with nothing
buffered, and the broker holds it until one of *those* gets data: records
arriving meanwhile on the others (say, the sightings this worker just sent
itself) waited up to 1.5 s. The worker's consumer waits at most
:data:`FETCH_MAX_WAIT_MS` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        unset = [tp for tp, offset in committed.items() if not offset]
        if unset:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *unset)
        return committed


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """The aiokafka transport, its consumer seeking back without losses."""

    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose consumer uses :class:`Transport`."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)
