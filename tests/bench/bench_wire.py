"""Benchmark: encoding and decoding raw batches with the wire codec.

Baseline in the same run: the standard library's json on the same records
(dicts in, dicts out, no validation), so the table shows what the typed codec
costs or saves on this machine today.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import msgspec
from rich.console import Console
from rich.table import Table

from callmap.wire import DNS, DnsAnswer, DnsAnswerBatch, decode, encode_batches

RECORDS_PER_BATCH = 500
BATCHES = 40


def _answers() -> list[DnsAnswer]:
    return [
        DnsAnswer(
            cluster="prod",
            node="node-a",
            ts=1_700_000_000.0 + i,
            client_ip=f"10.1.{i % 200}.7",
            server_ip="10.96.0.10",
            transport="udp",
            qname=f"svc-{i % 97}.shop.svc.cluster.local",
            qtype="A",
            answers=(f"10.96.{i % 250}.{i % 200}",),
            ttl=30,
            count=1 + i % 3,
        )
        for i in range(RECORDS_PER_BATCH)
    ]


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    answers = _answers()
    messages = [
        m.value
        for _ in range(BATCHES)
        for m in encode_batches(DnsAnswerBatch, cluster="prod", node="node-a", records=answers)
    ]
    as_dicts = [msgspec.to_builtins(a) for a in answers]
    total = RECORDS_PER_BATCH * BATCHES

    rows = [
        (
            "encode batch (callmap)",
            _best_of(
                5,
                lambda: [
                    list(
                        encode_batches(
                            DnsAnswerBatch, cluster="prod", node="node-a", records=answers
                        )
                    )
                    for _ in range(BATCHES)
                ],
            ),
        ),
        (
            "encode batch (json, baseline)",
            _best_of(
                5,
                lambda: [
                    json.dumps(
                        {"v": 1, "cluster": "prod", "node": "node-a", "records": as_dicts}
                    ).encode()
                    for _ in range(BATCHES)
                ],
            ),
        ),
        ("decode + validate (callmap)", _best_of(5, lambda: [decode(DNS, m) for m in messages])),
        (
            "decode, no validation (json, baseline)",
            _best_of(5, lambda: [json.loads(m) for m in messages]),
        ),
    ]
    table = Table(title=f"wire codec: {total:,} DnsAnswer records in {BATCHES} batches, best of 5")
    table.add_column("operation")
    table.add_column("records/s", justify="right")
    table.add_column("µs/record", justify="right")
    for name, seconds in rows:
        table.add_row(name, f"{total / seconds:,.0f}", f"{seconds / total * 1e6:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
