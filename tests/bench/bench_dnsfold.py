"""How much memory and CPU the DNS folder takes at 100,000 answers/s, without a network.

`capture.dnsfold.DnsFolder` holds a flush window of answers, and remembers
every response it saw for at least ``dedup_seconds`` (0.25 s), so that a copy
of it on another interface is not counted twice. With answers that never
repeat (every name new, the worst case) that memory is what decides the
agent's RSS. Here the folder takes 6 s of simulated time at a fixed rate,
flushed every second as the agent flushes (``--flush-interval``'s default),
in one process:

- *distinct*: every answer a new name for a new client (nothing folds);
- *repeating* (the baseline, same run): the same 5,000 answers over and over,
  as steady traffic looks (almost everything folds);

each also with every response parsed in Python only (`DnsFolder(...,
native=False)`), next to the default that reads the usual response in C.

It prints, for each, the folder's peak traced memory (``tracemalloc``,
before a flush, when it is largest), the most that a flush and the encoding
of its records into messages, as the agent does both, added to it, and the
CPU per answer, flush included (a run of its own, without tracing or
encoding).

Run: python tests/bench/bench_dnsfold.py [--rate N] [--seconds S]
"""

from __future__ import annotations

import argparse
import struct
import time
import tracemalloc

from rich.console import Console
from rich.table import Table

from callmap.counters import Counters
from callmap.lists import drained
from callmap.wire import DnsAnswerBatch, encode_batches
from capture.dnsfold import DnsFolder
from capture.frames import Segment

WINDOW = 1.0
"""Seconds between two flushes, the agent's default."""
REPEATING = 5_000


def response(n: int) -> bytes:
    """A one-A-record response to ``svc-<n>.shop.svc.cluster.local``, message id ``n``."""
    labels = f"svc-{n}.shop.svc.cluster.local".encode().split(b".")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    header = struct.pack("!HHHHHH", n & 0xFFFF, 0x8180, 1, 1, 0, 0)
    address = bytes([10, 96, (n >> 8) & 255, n & 255])
    return (
        header
        + qname
        + struct.pack("!HH", 1, 1)
        + b"\xc0\x0c"
        + struct.pack("!HHIH", 1, 1, 30, 4)
        + address
    )


def segments(count: int, distinct: bool) -> list[Segment]:
    """``count`` responses from the DNS service to clients, as capture decodes them."""
    kinds = count if distinct else REPEATING
    payloads = [response(n) for n in range(kinds)]
    clients = [f"10.4.{n % 200}.{n % 250 + 1}" for n in range(min(kinds, 50_000))]
    return [
        Segment(
            "10.96.0.10",
            clients[(n % kinds) % len(clients)],
            53,
            40_000 + (n % kinds) % 20_000,
            "udp",
            payloads[n % kinds],
        )
        for n in range(count)
    ]


def feed(
    frames: list[Segment], rate: int, memory: MemoryProbe | None = None, *, native: bool = True
) -> float:
    """Feed ``frames`` at ``rate`` a second of simulated time; CPU seconds taken.
    Each window is closed and its answers sorted, as the agent flushes; with
    ``memory`` they are also encoded into messages, as the agent does, and the
    memory is read around each flush."""
    folder = DnsFolder(cluster="bench", node="node-a", counters=Counters(), native=native)
    per_window = int(rate * WINDOW)
    started = time.process_time()
    for window, first in enumerate(range(0, len(frames), per_window)):
        now = window * WINDOW
        for offset, segment in enumerate(frames[first : first + per_window]):
            folder.add_segment(segment, now + offset / rate)
        if memory is None:
            folder.close_window(now + WINDOW).answers()
            continue
        memory.before_flush()
        answers = drained(folder.close_window(now + WINDOW).answers())
        messages = list(encode_batches(DnsAnswerBatch, cluster="c", node="n", records=answers))
        memory.after_flush()
        del messages
    return time.process_time() - started


class MemoryProbe:
    """Traced memory: the most before a flush, and the most a flush and the encoding
    of its messages added to what was there before it."""

    def __init__(self) -> None:
        self.base = tracemalloc.get_traced_memory()[0]
        self.peak = 0
        self.flushing = 0
        self._before = 0

    def before_flush(self) -> None:
        self._before = tracemalloc.get_traced_memory()[0]
        self.peak = max(self.peak, self._before - self.base)
        tracemalloc.reset_peak()

    def after_flush(self) -> None:
        self.flushing = max(self.flushing, tracemalloc.get_traced_memory()[1] - self._before)


def peak_memory(frames: list[Segment], rate: int, native: bool) -> MemoryProbe:
    """The folder's memory, traced, over a run."""
    tracemalloc.start()
    try:
        probe = MemoryProbe()
        feed(frames, rate, probe, native=native)
    finally:
        tracemalloc.stop()
    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=100_000, help="answers a second")
    parser.add_argument("--seconds", type=float, default=6.0, help="simulated seconds")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    table = Table(title=f"DNS folder at {args.rate:,} answers/s, {args.seconds:g} s simulated")
    columns = ("answers", "peak traced memory", "flush + messages", "CPU per answer", "answers/s")
    for column in columns:
        table.add_column(column, justify="right")
    runs = (
        ("distinct", True, True),
        ("distinct, parsed in Python only", True, False),
        ("repeating (baseline)", False, True),
        ("repeating, parsed in Python only", False, False),
    )
    for name, distinct, native in runs:
        frames = segments(count, distinct)
        cpu = min(feed(frames, args.rate, native=native) for _ in range(2))
        memory = peak_memory(frames, args.rate, native)
        table.add_row(
            name,
            f"{memory.peak / 1e6:,.0f} MB",
            f"+{memory.flushing / 1e6:,.1f} MB",
            f"{cpu / count * 1e6:.2f} µs",
            f"{count / cpu:,.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
