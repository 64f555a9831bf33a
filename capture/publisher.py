"""Sends the outbox to Kafka, in order, through outages.

One named task hands the oldest messages to the producer (acks from all
replicas, idempotent, lz4), up to :data:`IN_FLIGHT` at once, and removes each
from the outbox once acknowledged, oldest first. With one message at a time
the agent's publishing stalled at a flush's worth of answers that did not fold:
each message waited for the last one's acknowledgement, and at 100,000
answers/s the event loop waits for the capture thread to let go of the
interpreter at every step of a round trip. When the broker is unreachable the
task backs off exponentially and tries again, from the oldest message not
acknowledged; the outbox keeps absorbing new messages meanwhile (dropping its
oldest waiting ones past the budget, and those past the age bound). Delivery
is at least once: a send that timed out may have landed and is sent again.

The agent's own stats travel on a lane of their own, never dropped: it holds
the latest stats message, which goes out before any data. A newer one that
arrives while the broker is away replaces it; the running totals it carries
cover the one it replaced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from callmap.backoff import Backoff
from callmap.broker import start_producer, stop_quietly
from callmap.config import KafkaSettings
from callmap.counters import StageCounters
from callmap.logthrottle import Due, LogThrottle
from callmap.wire import DROP_OVERFLOW, DROP_TOO_OLD
from capture.outbox import Outbox, Outgoing

log = logging.getLogger(__name__)

IN_FLIGHT = 4
"""Messages handed to the producer before the oldest is acknowledged: up to 3.6 MB
of batches (``MAX_BATCH_BYTES`` each), all of them still counted in the outbox."""
DROP_LOG_INTERVAL = 10.0
"""Seconds between two log lines about records dropped for one reason. Under a
sustained overload every message would drop some; the counters have each."""


class Publisher:
    """Drains an :class:`Outbox` into Kafka; counts sent and dropped records."""

    def __init__(
        self,
        kafka: KafkaSettings,
        outbox: Outbox,
        counters: StageCounters,
        *,
        send_timeout: float = 15.0,
        max_backoff: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self.outbox = outbox
        self._counters = counters
        self._send_timeout = send_timeout
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._clock = clock
        self._producer: Any = None
        self._stats: Outgoing | None = None
        self._stats_out: Outgoing | None = None
        """The stats message being sent, if any."""
        self.connected = False
        self._overflowed = LogThrottle(DROP_LOG_INTERVAL, clock)
        self._expired = LogThrottle(DROP_LOG_INTERVAL, clock)

    def submit(self, message: Outgoing) -> None:
        """Queue a message (never blocks); count records dropped to make room."""
        self._counters.seen += message.records
        dropped = self.outbox.put(dataclasses.replace(message, queued_at=self._clock()))
        if dropped:
            self._counters.drop(DROP_OVERFLOW, dropped)
            _say_dropped("outbox full: dropped the oldest", self._overflowed.add(dropped))
        self._wakeup.set()

    def submit_stats(self, message: Outgoing) -> None:
        """Put ``message`` on the stats lane, in place of any stats not sent yet."""
        self._stats = message
        self._wakeup.set()

    def _take(self) -> Outgoing | None:
        """The next message to hand to the producer: the stats first, then the oldest
        queued message not handed out yet."""
        if self._stats is not None and self._stats is not self._stats_out:
            self._stats_out = self._stats
            return self._stats
        expired = self.outbox.expire(self._clock())
        if expired:
            self._counters.drop(DROP_TOO_OLD, expired)
            what = f"past the outbox's {self.outbox.max_age:.0f} s: dropped"
            _say_dropped(what, self._expired.add(expired))
        return self.outbox.take()

    def _sent(self, message: Outgoing, stats: bool) -> None:
        if not stats:
            self.outbox.done(message)
            self._counters.emitted += message.records
            return
        if self._stats is message:  # not replaced while it was being sent
            self._stats = None
        if self._stats_out is message:
            self._stats_out = None

    async def run(self) -> None:
        """Send until cancelled."""
        backoff = Backoff(0.5, self._max_backoff)
        sending: deque[tuple[Outgoing, bool, asyncio.Future[Any]]] = deque()
        try:
            while True:
                try:
                    while len(sending) < IN_FLIGHT and (message := self._take()) is not None:
                        stats = message is self._stats_out
                        sending.append((message, stats, await self._hand(message)))
                    if not sending:
                        self._wakeup.clear()
                        await self._wakeup.wait()
                        continue
                    message, stats, acknowledged = sending[0]
                    async with asyncio.timeout(self._send_timeout):
                        await acknowledged
                except (KafkaError, TimeoutError, OSError) as exc:
                    self.connected = False
                    sending.clear()  # sent again, oldest first, once the broker is back
                    self._take_back()
                    pause = backoff.next()
                    log.warning("Kafka send failed (%s); retrying in %.1fs", exc, pause)
                    await self._close_producer()
                    await asyncio.sleep(pause)
                    continue
                sending.popleft()
                backoff.reset()
                self._sent(message, stats)
        finally:  # what was not acknowledged waits for the next run (the final drain)
            self._take_back()
            await self._close_producer()

    def _take_back(self) -> None:
        """Everything handed to the producer and not acknowledged waits to go again."""
        self.outbox.release()
        self._stats_out = None

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (len(self.outbox) or self._stats is not None) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not len(self.outbox) and self._stats is None

    async def _hand(self, message: Outgoing) -> asyncio.Future[Any]:
        """Give ``message`` to the producer; the future is its acknowledgement."""
        if self._producer is None:
            self._producer = await start_producer(
                self._kafka, self._send_timeout, compression_type="lz4", request_timeout_ms=10_000
            )
            if not self.connected:
                log.info("connected to Kafka at %s", self._kafka.bootstrap_servers)
            self.connected = True
        async with asyncio.timeout(self._send_timeout):
            acknowledged: asyncio.Future[Any] = await self._producer.send(
                message.topic, message.value, key=message.key
            )
        return acknowledged

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        await stop_quietly(producer, "the producer")


def _say_dropped(what: str, due: Due | None) -> None:
    """The log line about dropped records, when one is due."""
    if due is None:
        return
    if due.since is None:
        log.warning(
            "%s %d records (further drops logged at most every %.0f s)",
            what,
            due.occurrences,
            DROP_LOG_INTERVAL,
        )
    else:
        log.warning("%s %d records in the last %.0f s", what, due.occurrences, due.since)
