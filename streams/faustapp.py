"""The Faust app: raw events and identities in, deduplicated edges out.

Three agents, each a thin shell around the pure classes:

1. ``resolve`` consumes the raw topics (per-node batches, co-partitioned so a
   node's DNS answers and sockets meet on one worker) and sends one
   ``EdgeSighting`` per edge and batch to the internal sightings topic, in one
   message per partition of those edges' ids; events whose identities have
   not arrived go to the pending topic, due after the grace period. Repeats
   of edges it forwarded lately are combined and sent once per combine
   interval (:mod:`streams.combine`).
2. ``retry`` consumes the pending topic, waits until each batch is due, and
   resolves it with raw ``ip`` endpoints for whatever is still unknown.
3. ``merge`` consumes the sightings topic. It owns the edges of its
   partitions (their states backed by a changelog topic, so a restarted or
   rebalanced worker recovers them) and announces ``new``, ``refresh`` and
   ``expired`` on the compacted edges topic, in transactions
   (:mod:`streams.edgelog`): each edge is announced ``new`` exactly once.
   Ticks (empty messages that the leader sends to every partition) drive
   refresh and expiry.

Undecodable messages go to the dead-letter topic with their origin; the
stream goes on. See docs/streams.md for the delivery guarantees.

This is the one module that speaks Faust; the stages it drives
(:mod:`streams.resolvestage`, :mod:`streams.mergestage`) know nothing of it.
Its Kafka transport carries three repairs:

**No records lost on a seek back.** When Faust's flow stops in the middle of
a fetched batch (a rebalance), it drops the rest
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

**An idempotent producer.** Faust turns idempotence on only for transactions,
so a produce request retried after a lost response could write a sighting, a
pending event or a dead letter twice. Faust's producer is idempotent with
``acks=all`` here, as every other callmap producer is (the edge log's own
producers are transactional).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import aiokafka
import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from callmap.broker import use_fast_lz4
from callmap.config import Settings
from callmap.counters import Counters
from callmap.errors import WireDecodeError
from callmap.wire import (
    DLQ,
    DNS,
    PENDING,
    SIGHTINGS,
    SOCKETS,
    DeadLetter,
    EdgeSighting,
    PendingBatch,
    Record,
    SightingBatch,
    decode,
    encode,
    encode_pending_batches,
    encode_sighting_batches,
)
from callmap.wire.topics import (
    TopicSpec,
    changelog_topic,
    for_app,
    owner_partition,
)
from streams.caps import Oversized, edge_cap_error, over_bytes, within_caps
from streams.combine import DEFAULT_FORGET_AFTER, Combiner
from streams.edgelog import (
    EdgeLog,
    EdgeLogSettings,
)
from streams.identityfeed import IdentityFeed
from streams.mergestage import Merged, MergeSettings, MergeStage
from streams.nodeloss import NodeLoss
from streams.resolvestage import Identities, ResolveStage
from streams.settings import StreamSettings
from streams.statsfeed import StatsFeed

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class _Producer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        # Faust asks for idempotence only inside transactions; a retried produce
        # request must not write a message twice.
        # (acks=all comes from the app's producer_acks.)
        return {"enable_idempotence": True}


class Transport(driver.Transport):
    """The aiokafka transport: its consumer seeks back without losses, its producer
    is idempotent."""

    Consumer = _Consumer
    Producer = _Producer


class App(faust.App):
    """A Faust app whose consumer uses :class:`Transport`, and which tells
    :attr:`on_assignment` of a new assignment before it delivers a message of it."""

    on_assignment: Callable[[set[TP]], None] | None = None

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if self.on_assignment is not None and not self.should_stop:
            self.on_assignment(assigned)
        await super()._on_partitions_assigned(assigned, generation_id)


# Messages each stream buffers ahead of its agent.
STREAM_BUFFER = 64
# Bytes of one producer batch (one partition's share of a produce request), for
# Faust's producer and the edge log's. Faust's 16 KiB filled after some 30
# changelog or edge writes, and the next write of that partition waited until
# the full batch was sent: a cold start's thousands of them went out request
# by request.
PRODUCER_BATCH_BYTES = 512 * 1024


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")]


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    ssl_context = kafka.ssl_context() if kafka.security_protocol.endswith("SSL") else None
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            ssl_context=ssl_context,
            mechanism=kafka.sasl_mechanism,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


class StreamApp:
    """Builds the Faust app and holds what its agents share."""

    def __init__(
        self,
        settings: Settings,
        stream: StreamSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.clock = clock
        self.counters = Counters()
        use_fast_lz4()  # Faust's producer compresses with aiokafka's LZ4 (below)
        self.identities = Identities(stream.resolve, self.counters)
        combiner = Combiner(
            stream.combine_interval,
            forget_after=min(DEFAULT_FORGET_AFTER, stream.ttl / 2),
            max_edges_per_client=stream.caps.edges_per_client,
            edge_ttl=stream.ttl,
        )
        self.resolve = ResolveStage(
            self.identities,
            stream.resolve,
            self.counters,
            combiner,
            max_records=stream.caps.batch_records,
        )
        self.feed = IdentityFeed(settings.kafka, self.identities, self.dead_letter)
        self.stats_feed = StatsFeed(settings.kafka, NodeLoss(), self.dead_letter)
        self.app = App(
            stream.app_id,
            broker=_broker_urls(settings),
            broker_credentials=_credentials(settings),
            store="memory://",
            datadir=str(stream.data_dir / f"{stream.app_id}-data"),
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            topic_allow_declare=True,
            topic_replication_factor=stream.replication,
            table_standby_replicas=0,
            stream_wait_empty=False,
            # A raw message is a batch of up to 900 kB: Faust's default of 4,096
            # buffered messages a stream let a worker catching up on a backlog grow
            # by gigabytes. 64 keep the agents busy.
            stream_buffer_maxsize=STREAM_BUFFER,
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            # Sightings and pending events in LZ4's fast mode, as the edge log's: on
            # the stream bench a cold run's CPU fell by about a fifth.
            producer_compression_type="lz4",
            broker_session_timeout=stream.session_timeout,
            broker_heartbeat_interval=min(3.0, stream.session_timeout / 3),
        )
        app = self.app
        self.raw_topic = app.topic(DNS.name, SOCKETS.name, key_type=bytes, value_type=bytes)
        self.pending = for_app(PENDING, stream.app_id)
        self.sightings = for_app(SIGHTINGS, stream.app_id)
        self.pending_topic = app.topic(self.pending.name, key_type=bytes, value_type=bytes)
        self.sightings_topic = app.topic(
            self.sightings.name,
            key_type=bytes,
            value_type=bytes,
            partitions=stream.sighting_partitions,
        )
        self.dlq_topic = app.topic(DLQ.name, key_type=bytes, value_type=bytes)
        merge = MergeSettings(stream.refresh_interval, stream.ttl, stream.sighting_partitions)
        self.merge = MergeStage({}, merge, self.counters)
        log_settings = EdgeLogSettings(
            app_id=stream.app_id,
            changelog=changelog_topic(stream.app_id),
            transaction_timeout=max(10.0, stream.session_timeout),
            batch_bytes=PRODUCER_BATCH_BYTES,
        )
        self.edge_log = EdgeLog(
            settings.kafka,
            self.merge,
            log_settings,
            self.counters,
            on_failure=lambda error: asyncio.ensure_future(self.app.crash(error)),
        )
        app.on_assignment = self._assigned
        app.agent(self.raw_topic, name="resolve")(self._resolve)
        app.agent(self.pending_topic, name="retry")(self._retry)
        app.agent(self.sightings_topic, name="merge")(self._merge)
        app.task(self.feed.run)
        app.task(self.stats_feed.run)
        app.timer(stream.tick_interval, on_leader=True)(self._tick)
        app.timer(5.0)(self._measure_lag)
        app.timer(stream.commit_interval)(self.edge_log.commit)
        if stream.combine_interval > 0:
            app.timer(stream.combine_interval / 2)(self._send_held)
        app.on_before_shutdown.connect(self._drain_held)
        app.on_before_shutdown.connect(self._close_edge_log)
        self.lag = 0
        """Messages on this worker's raw and sightings partitions not consumed yet."""

    def health(self) -> list[str]:
        """What keeps the worker from working (``/healthz``): an edge log write or
        commit that has not finished for over ``stall_limit`` seconds."""
        stalled = self.edge_log.stalled(self.stream.stall_limit)
        return [] if stalled is None else [stalled]

    # --- agents ------------------------------------------------------------------

    async def _resolve(self, stream: Any) -> None:
        # Iterate at once and wait for the identities inside the loop: Faust
        # subscribes a stream when it is first iterated, and drops what its
        # fetcher delivers before that.
        ready = self.feed.ready
        async for event in stream.events():
            if not ready.is_set():
                await ready.wait()
            message = event.message
            spec = DNS if message.topic == DNS.name else SOCKETS
            self.counters.stage(f"in.{spec.name}").seen += 1
            resolve = partial(self.resolve.message, spec, now=self.clock())
            results = await self._take(message, resolve)
            if results is not None:
                await self._send_results(*results)

    async def _retry(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            self.counters.stage("in.pending").seen += 1
            batch = await self._decode(self.pending, message)
            if batch is None:
                continue
            assert isinstance(batch, PendingBatch)
            wait = batch.due - self.clock()
            if wait > 0:  # batches arrive in due order: waiting for this one delays none
                await asyncio.sleep(wait)
            await self._send_results(*self.resolve.batch(batch, self.clock(), final=True))

    async def _send_results(
        self, sightings: list[EdgeSighting], pending: PendingBatch | None
    ) -> None:
        await self._send_sightings(sightings)
        if pending is not None:
            for message in encode_pending_batches(pending, self.stream.max_message_bytes):
                await self.pending_topic.send(key=pending.node.encode(), value=message.value)

    async def _send_held(self) -> None:
        await self._send_sightings(self.resolve.due(self.clock()))

    async def _drain_held(self, *_: Any, **__: Any) -> None:
        """Send the held repeats before the producer's last flush."""
        await self._send_sightings(self.resolve.drain())

    async def _send_sightings(self, sightings: list[EdgeSighting]) -> None:
        await self._report_capped()
        self.counters.stage("sightings").emitted += len(sightings)
        count = self.stream.sighting_partitions
        by_partition: dict[int, list[EdgeSighting]] = {}
        for sighting in sightings:
            partition = owner_partition(sighting.edge_id, count)
            by_partition.setdefault(partition, []).append(sighting)
        for partition, group in by_partition.items():
            for message in encode_sighting_batches(group, self.stream.max_message_bytes):
                await self.sightings_topic.send(key=None, value=message.value, partition=partition)

    async def _report_capped(self) -> None:
        """Count what the per-client edge cap dropped; dead-letter one sighting per
        client over it (at most hourly), saying so."""
        dropped, capped = self.resolve.combiner.take_capped()
        if dropped:
            self.counters.stage("sightings").drop("edge_cap", dropped)
        cap = self.stream.caps.edges_per_client
        for sighting in capped:
            error = edge_cap_error(sighting, cap)
            key = sighting.edge_id.encode()
            await self.dead_letter(
                self.sightings.name,
                error,
                None,
                None,
                key,
                encode(sighting),
                reason="edge_cap",
                counted=True,
            )

    async def _merge(self, stream: Any) -> None:
        # Acknowledged once the edge log has committed what the message made.
        async for event in stream.noack().events():
            message = event.message
            partition = message.partition
            if not await self.edge_log.owns(partition):
                continue  # handed over: its owner reads it again
            self.counters.stage("in.sightings").seen += 1
            merged = Merged()
            if not message.value:  # a tick
                merged = self.merge.tick(partition, self.clock())
            else:
                batch = await self._decode(self.sightings, message)
                if batch is not None:
                    assert isinstance(batch, SightingBatch)
                    merged = self.merge.sightings(partition, batch, self.clock())
            await self.edge_log.write(partition, merged, event.ack)

    async def _measure_lag(self) -> None:
        ours = {DNS.name, SOCKETS.name, self.pending.name, self.sightings.name}
        self.lag = await consumer_lag(self.app.consumer, ours)

    def _assigned(self, assigned: set[TP]) -> None:
        self.edge_log.assign({tp.partition for tp in assigned if tp.topic == self.sightings.name})

    async def _close_edge_log(self, *_: Any, **__: Any) -> None:
        await self.edge_log.close()

    async def _tick(self) -> None:
        for partition in range(self.stream.sighting_partitions):
            await self.sightings_topic.send(key=b"tick", value=b"", partition=partition)

    async def _decode(self, spec: TopicSpec, message: Any) -> Record | None:
        """The message's record, or None after sending it to the dead-letter topic."""
        caps = self.stream.caps
        return await self._take(message, lambda value: within_caps(decode(spec, value), caps))

    async def _take(self, message: Any, take: Callable[[bytes], T]) -> T | None:
        """What ``take`` makes of the message's value, or None after sending the message
        to the dead-letter topic: over the byte cap, undecodable, or over the record cap
        (``take`` raises :class:`~streams.caps.Oversized`)."""
        value: bytes = message.value or b""
        problem: str | WireDecodeError | None = over_bytes(len(value), self.stream.caps)
        reason = "oversized"
        if problem is None:
            try:
                return take(value)
            except WireDecodeError as error:
                problem, reason = error, "undecodable"
            except Oversized as error:
                problem = str(error)
        await self.dead_letter(
            message.topic,
            problem,
            message.partition,
            message.offset,
            message.key,
            value,
            reason=reason,
        )
        return None

    async def dead_letter(
        self,
        topic: str,
        error: str | WireDecodeError,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes,
        *,
        reason: str = "undecodable",
        counted: bool = False,
    ) -> None:
        """Send a message the stream will not take to the dead-letter topic, with its
        origin and why."""
        self.counters.events["dead_lettered"] += 1
        if not counted:  # else the caller counted the drop in its own stage
            self.counters.stage(f"in.{topic}").drop(reason)
        log.warning("dead-lettering %s[%s]@%s (%s): %s", topic, partition, offset, reason, error)
        letter = DeadLetter(
            ts=self.clock(),
            stage="streams",
            error=str(error),
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            payload_b64=base64.b64encode(value).decode(),
            reason=reason,
        )
        await self.dlq_topic.send(key=key, value=encode(letter))


async def consumer_lag(consumer: Any, topics: set[str]) -> int:
    """Messages between the consumer's positions and the high-water marks, over its
    partitions of ``topics``.

    A partition a rebalance takes away between the assignment being read and its
    position (aiokafka raises IllegalStateError) is left out: the next measure counts
    the new assignment. Raising instead crashed the worker's timer, and the worker."""
    lag = 0
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        try:
            position = await consumer.position(tp)
        except IllegalStateError:
            continue
        highwater = consumer.highwater(tp)
        if highwater is not None and position is not None:
            lag += max(0, highwater - position)
    return lag


def run_worker(app: StreamApp) -> None:
    """Run ``app`` as a Faust worker until a signal stops it, logging at the root's level."""
    from faust.worker import Worker

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    Worker(app.app, loglevel=level, quiet=True, redirect_stdouts=False).execute_from_commandline()
