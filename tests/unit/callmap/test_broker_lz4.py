"""A producer asked for lz4 compresses in LZ4's fast mode, as Kafka's own clients do."""

from __future__ import annotations

import cramjam
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from callmap.broker import make_producer
from callmap.config import load_settings

VALUE = b"".join(
    b'{"qname":"svc-%d.shop.svc.cluster.local","answers":["10.96.%d.%d"]},' % (n, n // 250, n % 250)
    for n in range(5_000)
)


def _lz4_batch() -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=DefaultRecordBatch.CODEC_LZ4, is_transactional=0,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=2**24,
    )  # fmt: skip
    builder.append(0, timestamp=None, key=b"node-a", value=VALUE, headers=[])
    return bytes(builder.build())


def _fast_frame(data: bytes) -> bytes:
    """What LZ4's fast mode makes of ``data`` as Kafka frames it, computed apart."""
    compressor = cramjam.lz4.Compressor(level=0, content_checksum=False, block_linked=False)
    compressor.compress(data)
    return bytes(compressor.finish())


async def test_an_lz4_producers_batches_are_lz4_frames_of_the_fast_mode() -> None:
    producer = make_producer(load_settings({}).kafka, compression_type="lz4")
    try:
        batch = _lz4_batch()
    finally:
        await producer.stop()  # never started: nothing to flush
    header = 61  # a v2 record batch's header: offsets, CRC, attributes, ids; not compressed
    inner = bytes(cramjam.lz4.decompress(batch[header:]))
    assert batch[header:] == _fast_frame(inner)
    (record,) = DefaultRecordBatch(batch)
    assert record.value == VALUE
