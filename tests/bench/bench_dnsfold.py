"""How much memory and CPU the DNS folder takes at 100,000 answers/s, without a network.

`capture.dnsfold.DnsFolder` holds a flush window of answers, and remembers
every response it saw for at least ``dedup_seconds`` (0.5 s), so that a copy
of it on another interface is not counted twice. With answers that never
repeat (every name new, the worst case) that memory is what decides the
agent's RSS. Here the folder takes 6 s of simulated time at a fixed rate,
flushed every second as the agent flushes (``--flush-interval``'s default),
in one process:

- *distinct*: every answer a new name for a new client (nothing folds);
- *repeating* (the baseline, same run): the same 5,000 answers over and over,
  as steady traffic looks (almost everything folds).

It prints, for each, the folder's peak traced memory (``tracemalloc``,
before a flush, when it is largest) and the CPU per answer (a run of its
own, without tracing).

Run: python tests/bench/bench_dnsfold.py [--rate N] [--seconds S]
"""

from __future__ import annotations

import argparse
import struct
import time
import tracemalloc
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from callmap.counters import Counters
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


def feed(frames: list[Segment], rate: int, probe: Callable[[], None]) -> float:
    """Feed ``frames`` at ``rate`` a second of simulated time; CPU seconds taken."""
    folder = DnsFolder(cluster="bench", node="node-a", counters=Counters())
    per_window = int(rate * WINDOW)
    started = time.process_time()
    for window, first in enumerate(range(0, len(frames), per_window)):
        now = window * WINDOW
        for offset, segment in enumerate(frames[first : first + per_window]):
            folder.add_segment(segment, now + offset / rate)
        probe()
        folder.flush(now + WINDOW)
    return time.process_time() - started


def peak_memory(frames: list[Segment], rate: int) -> int:
    """The folder's largest traced memory, in bytes, before a flush."""
    tracemalloc.start()
    base, peak = tracemalloc.get_traced_memory()[0], 0

    def probe() -> None:
        nonlocal peak
        peak = max(peak, tracemalloc.get_traced_memory()[0] - base)

    try:
        feed(frames, rate, probe)
    finally:
        tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=100_000, help="answers a second")
    parser.add_argument("--seconds", type=float, default=6.0, help="simulated seconds")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    table = Table(title=f"DNS folder at {args.rate:,} answers/s, {args.seconds:g} s simulated")
    for column in ("answers", "peak traced memory", "CPU per answer", "answers/s of CPU"):
        table.add_column(column, justify="right")
    for name, distinct in (("distinct", True), ("repeating (baseline)", False)):
        frames = segments(count, distinct)
        cpu = min(feed(frames, args.rate, lambda: None) for _ in range(2))
        memory = peak_memory(frames, args.rate)
        table.add_row(
            name, f"{memory / 1e6:,.0f} MB", f"{cpu / count * 1e6:.2f} µs", f"{count / cpu:,.0f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
