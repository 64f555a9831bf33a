"""How much CPU the DNS folder takes per answer from receive ring blocks, three
ways, in one process, alternating rounds: each block walked in Python
(`capture.packetring.read_block` handing each frame to `DnsFolder.add_frame`,
the frame still read in C), the baseline; walked and read in C and folded in
Python (`capture.frames.read_plain_block` handing each usual frame to
`DnsFolder._add_response`); walked, read and folded in C
(`DnsFolder.take_block`, `capture/_dnsfast_fold.c`'s `fold_block`), the agent's way.

The blocks are what the kernel writes (``tests/helpers/ringblocks.py``): 512
KiB each, as the agent's ring asks, full of usual frames carrying distinct
answers (every name new, nothing folds), the window closed whenever it is
full (``--max-window-answers``' default) as the agent does. The CPU of
closing windows is left out: every way shares it.

Run: python tests/bench/bench_ringblocks.py [--answers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

from bench_dnsfold import response
from helpers.ringblocks import block

from callmap.counters import Counters
from callmap.heap import settle
from capture.dnsfold import DEFAULT_MAX_WINDOW, DnsFolder
from capture.frames import read_plain_block
from capture.packetring import read_block
from capture.sniffer import RING_BLOCK_SIZE


def frame(n: int) -> bytes:
    """An untagged Ethernet frame of IPv4 carrying answer ``n`` to its own client (its
    IP checksum left zero: capture checks none, as offloading leaves them unfilled)."""
    payload = response(n)
    udp = struct.pack("!HHHH", 53, 40000 + n % 20000, 8 + len(payload), 0) + payload
    client = socket.inet_aton(f"10.4.{n // 250 % 250}.{n % 250 + 1}")
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0x4000, 64, 17, 0,
        socket.inet_aton("10.96.0.10"), client,
    )  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + header + udp


def blocks(answers: int) -> list[memoryview]:
    """Ring blocks holding ``answers`` frames, 100,000 a second of capture time."""
    made, n = [], 0
    while n < answers:
        frames: list[tuple[bytes, int, int]] = []
        while n < answers and len(frames) < 2_400:  # about 500 KiB of these frames
            frames.append((frame(n), 1_796_000_000 + n // 100_000, n % 100_000 * 10_000))
            n += 1
        made.append(memoryview(block(frames, size=RING_BLOCK_SIZE)))
    return made


Take = Callable[[DnsFolder, memoryview], None]
"""One way to take a ring block into a folder."""


def walked_in_python(folder: DnsFolder, view: memoryview) -> None:
    read_block(view, 0, RING_BLOCK_SIZE, folder.add_frame)


def walked_in_c(folder: DnsFolder, view: memoryview) -> None:
    assert read_plain_block is not None
    read_plain_block(view, 0, RING_BLOCK_SIZE, folder._add_response, folder._add_unusual)


def folded_in_c(folder: DnsFolder, view: memoryview) -> None:
    folder.take_block(view, 0, RING_BLOCK_SIZE)


WAYS: dict[str, Take] = {
    "walked in Python, read in C (baseline)": walked_in_python,
    "walked and read in C, folded in Python": walked_in_c,
    "walked, read and folded in C": folded_in_c,
}
"""The ways a block is taken, by their rows' labels."""


def fold(ring_blocks: list[memoryview], answers: int, take: Take) -> float:
    """CPU µs an answer, windows' closing left out."""
    folder = DnsFolder(cluster="bench", node="node-a", counters=Counters())
    closing = 0.0
    started = time.process_time()
    for view in ring_blocks:
        take(folder, view)
        if folder.full:
            before = time.process_time()
            folder.close_window(2e9)
            closing += time.process_time() - before
    return (time.process_time() - started - closing) / answers * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if read_plain_block is None:
        print("capture/_dnsfast.c was not built: nothing to compare")
        return
    ring_blocks = blocks(args.answers)
    settle()
    taken: dict[str, list[float]] = {label: [] for label in WAYS}
    for _ in range(args.rounds):
        for label, take in WAYS.items():
            taken[label].append(fold(ring_blocks, args.answers, take))
    table = Table(
        title=f"DNS folder from ring blocks: {args.answers:,} distinct answers, "
        f"windows of {DEFAULT_MAX_WINDOW:,}, {args.rounds} alternating rounds"
    )
    for column in ("block", "µs an answer: median", "range"):
        table.add_column(column, justify="right")
    for label, spent in taken.items():
        median, lowest, highest = statistics.median(spent), min(spent), max(spent)
        table.add_row(label, f"{median:.2f}", f"{lowest:.2f}-{highest:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
