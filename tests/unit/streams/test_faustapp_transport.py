"""The worker's Kafka clients, as Faust builds them with callmap's repairs, and what it
reads of them."""

from __future__ import annotations

from aiokafka.errors import IllegalStateError
from faust.types import TP

from callmap.config import load_settings
from streams.faustapp import FETCH_MAX_WAIT_MS, StreamApp, consumer_lag
from streams.settings import StreamSettings


async def test_the_workers_consumer_never_holds_a_fetch_for_long() -> None:
    app = StreamApp(
        load_settings({"CALLMAP_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), StreamSettings(app_id="t")
    )
    thread = app.app.consumer._thread
    consumer = thread._create_worker_consumer(app.app.transport)
    try:
        # A private attribute of aiokafka's, read when the consumer starts: should a
        # release rename it, this fails instead of the setting quietly doing nothing.
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
        assert type(thread).seek_to_committed.__module__ == "streams.faustapp"
    finally:
        await consumer.stop()


async def test_the_workers_producer_is_idempotent_and_waits_for_every_replica() -> None:
    app = StreamApp(
        load_settings({"CALLMAP_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), StreamSettings(app_id="t")
    )
    producer = app.app.producer._new_producer()  # the aiokafka producer, not started
    try:
        # aiokafka keeps a transaction manager (producer id, sequence numbers) exactly
        # when idempotence is on.
        assert producer._txn_manager is not None
        assert producer._sender._acks == -1  # "all"
    finally:
        await producer.stop()


class _Rebalanced:
    """A consumer whose partition 1 was taken away by a rebalance after its assignment
    was read: aiokafka then refuses its position."""

    def assignment(self) -> set[TP]:
        return {TP("callmap.dns.v1", 0), TP("callmap.dns.v1", 1), TP("other", 0)}

    def highwater(self, tp: TP) -> int:
        return 100

    async def position(self, tp: TP) -> int:
        if tp.partition == 1:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 40


async def test_the_lag_leaves_out_a_partition_a_rebalance_took_away() -> None:
    assert await consumer_lag(_Rebalanced(), {"callmap.dns.v1"}) == 60
