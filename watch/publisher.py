"""Identity changes to Kafka: latest value per key, in order per key, through outages.

The identity topics are compacted, so only the newest value of each key
matters: :class:`Publisher` keeps pending changes in a dict keyed by (topic,
key), and a change to a key that has not been sent yet replaces the older one
(counted as ``superseded``). Memory is thus bounded by the number of objects,
however long Kafka is away. Changes go out in batches: every message of a
batch is handed to the idempotent producer, and the next batch starts only
when the whole batch is acknowledged, so two values of one key are never in
flight together. A failed send is retried after an exponential backoff, unless
a newer value of its key arrived meanwhile.

**Fenced, not just elected.** Each batch is one Kafka transaction of a
producer whose transactional id names the cluster (``callmap-watch-<cluster>``),
the same for every watcher of that cluster. A new leader's producer starts
before it reads the topics back (:meth:`Publisher.connect`), which aborts what
an old leader left open and fences it: the old leader's next batch fails with
``ProducerFenced`` and it stops publishing (:class:`watch.lease.LeadershipLost`),
however late it notices that its Lease is gone. Readers take committed records
only, so nothing of an aborted batch is ever read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.errors import KafkaError, ProducerFenced

from callmap.backoff import Backoff
from callmap.broker import start_producer, stop_quietly
from callmap.config import KafkaSettings
from callmap.counters import StageCounters
from callmap.wire import encode
from callmap.wire.topics import identity_key
from watch.identitytable import Change
from watch.lease import LeadershipLost

log = logging.getLogger(__name__)

_FAILURES = (KafkaError, TimeoutError, OSError)


class Publisher:
    """Sends submitted changes to Kafka, coalescing by key while they wait."""

    def __init__(
        self,
        kafka: KafkaSettings,
        counters: StageCounters,
        *,
        cluster: str = "default",
        batch_size: int = 1000,
        send_timeout: float = 30.0,
        max_backoff: float = 10.0,
    ) -> None:
        self._kafka = kafka
        self._counters = counters
        self._cluster = cluster
        self._batch_size = batch_size
        self._send_timeout = send_timeout
        self._max_backoff = max_backoff
        self.entitled: Callable[[], bool] = lambda: True
        """Whether this watcher may publish now (the lease's check, when there is one)."""
        self._pending: dict[tuple[str, str], Change] = {}
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._producer: Any = None
        self.connected = False

    def __len__(self) -> int:
        """Changes not acknowledged yet: waiting, or sent and not yet confirmed."""
        return len(self._pending) + self._in_flight

    def submit(self, change: Change) -> None:
        """Queue ``change`` (never blocks), replacing an unsent older value of its key."""
        self._counters.seen += 1
        slot = (change.topic.name, change.key)
        if slot in self._pending:
            self._counters.drop("superseded")
        self._pending[slot] = change
        self._wakeup.set()

    @property
    def transactional_id(self) -> str:
        """Shared by every watcher of the cluster: the newest producer fences the others."""
        return f"callmap-watch-{self._cluster}"

    async def connect(self) -> None:
        """Start the producer now: a new leader does so before it reads the topics back,
        which fences the previous leader."""
        self._check_entitled()
        await self._connect()

    def _check_entitled(self) -> None:
        if not self.entitled():
            raise LeadershipLost("the lease was not renewed within its deadline")

    def discard(self) -> None:
        """Forget everything unsent (leadership lost: the next leader publishes)."""
        self._pending.clear()

    async def run(self) -> None:
        """Send until cancelled."""
        backoff = Backoff(0.5, self._max_backoff)
        try:
            while True:
                if not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if await self._send_batch():
                    backoff.reset()
                else:
                    await asyncio.sleep(backoff.next())
        finally:
            await self.close()

    async def flush(self, timeout: float) -> bool:
        """Send what is pending, for at most ``timeout`` seconds; True if nothing is left."""
        try:
            async with asyncio.timeout(timeout):
                while self._pending:
                    if not await self._send_batch():
                        await asyncio.sleep(0.5)
        except TimeoutError:
            log.warning("shutting down with %d identity changes unsent", len(self._pending))
        except LeadershipLost as lost:
            log.warning("not sending %d identity changes: %s", len(self._pending), lost)
            self.discard()
        finally:
            await self.close()
        return not self._pending

    async def _send_batch(self) -> bool:
        """Send the oldest pending changes; False if any failed (they wait for a retry)."""
        slots = list(self._pending)[: self._batch_size]
        batch = [self._pending.pop(slot) for slot in slots]
        self._in_flight = len(batch)
        try:
            results = await self._send(batch)
        except BaseException:  # cancelled mid-batch: what was taken waits again
            self._requeue(zip(slots, batch, strict=True))
            raise
        finally:
            self._in_flight = 0
        failed = [(s, c) for s, c, r in zip(slots, batch, results, strict=True) if _failed(r)]
        self._counters.emitted += len(batch) - len(failed)
        if not failed:
            return True
        self._requeue(failed)
        error = next(r for r in results if _failed(r))
        log.warning("Kafka send failed for %d identity changes: %r", len(failed), error)
        self.connected = False
        await self.close()
        return False

    def _requeue(self, changes: Iterable[tuple[tuple[str, str], Change]]) -> None:
        for slot, change in changes:
            self._pending.setdefault(slot, change)  # unless a newer value came meanwhile

    async def _send(self, batch: list[Change]) -> list[Any]:
        """Each change's outcome: its record metadata, or the exception that stopped it
        (one for all when the transaction failed). Not entitled, or fenced:
        LeadershipLost (the term ends, and the next one starts afresh)."""
        try:
            self._check_entitled()
        except LeadershipLost:
            await self.close()
            raise
        try:
            producer = await self._connect()
            await producer.begin_transaction()
            futures = [
                await producer.send(
                    change.topic.name,
                    None if change.record is None else encode(change.record),
                    key=identity_key(change.topic, self._cluster, change.key),
                )
                for change in batch
            ]
            async with asyncio.timeout(self._send_timeout):
                results = list(await asyncio.gather(*futures, return_exceptions=True))
                failures = [result for result in results if _failed(result)]
                for failure in failures:
                    if isinstance(failure, ProducerFenced):
                        raise failure
                if failures:
                    return [failures[0]] * len(batch)
                await producer.commit_transaction()
            return results
        except ProducerFenced as fenced:
            await self.close()
            self._counters.drop("fenced", len(batch))
            raise LeadershipLost(
                f"another watcher publishes for cluster {self._cluster} now: {fenced}"
            ) from fenced
        except _FAILURES as exc:
            return [exc] * len(batch)

    async def _connect(self) -> Any:
        if self._producer is None:
            self._producer = await start_producer(
                self._kafka,
                self._send_timeout,
                compression_type="lz4",
                linger_ms=20,
                transactional_id=self.transactional_id,
            )
            log.info("publishing identities to Kafka at %s", self._kafka.bootstrap_servers)
        self.connected = True
        return self._producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        await stop_quietly(producer, "the identity producer")


def _failed(result: Any) -> bool:
    return isinstance(result, BaseException)
