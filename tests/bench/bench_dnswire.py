"""How fast `capture.dnswire` parses DNS answers, next to dnspython's parser.

Builds one corpus of realistic responses with dnspython (its writer compresses
names like real servers do; tests/helpers/dnscorpus.py): single A answers for
cluster.local services,
headless services with several A records, AAAA answers, pod names and
external names behind CNAME chains of one to three links. The parsers run on
the same corpus in the same process; each figure is the best of several
repeats, so that a busy machine slows all rather than skewing one. Ours runs
twice: as the agent runs it (the usual responses read in C when
capture/_dnsfast.c was built) and in Python only, so the C path's share is
visible in one run.

Run: python tests/bench/bench_dnswire.py [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import dns.message
from rich.console import Console
from rich.table import Table

from capture.dnswire import NATIVE_PARSE, DnsResponse, parse_response

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests/
from helpers.dnscorpus import build_corpus  # noqa: E402


def _check_agreement(corpus: list[bytes]) -> None:
    """Refuse to time parsers that disagree on what the corpus says."""
    for wire in corpus:
        ours = parse_response(wire)
        assert isinstance(ours, DnsResponse), ours
        assert parse_response(wire, native=False) == ours
        theirs = dns.message.from_wire(wire)
        addresses = [str(rdata) for rdata in theirs.answer[-1]]
        assert sorted(ours.answers) == sorted(addresses), (ours, addresses)
        assert ours.qname == theirs.question[0].name.to_text(omit_final_dot=True).lower()


def _best_rate(
    parse: Callable[[bytes], object], corpus: list[bytes], passes: int, repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(passes):
            for wire in corpus:
                parse(wire)
        best = min(best, time.perf_counter() - started)
    return passes * len(corpus) / best


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--repeats", type=int, default=9, help="best of this many runs")
    arguments.add_argument("--size", type=int, default=400, help="messages in the corpus")
    options = arguments.parse_args()
    corpus = build_corpus(options.size)
    _check_agreement(corpus)

    # dnspython is the slower one: fewer passes keep each repeat near 0.1 s.
    ours = _best_rate(parse_response, corpus, 40, options.repeats)
    python = _best_rate(partial(parse_response, native=False), corpus, 40, options.repeats)
    theirs = _best_rate(dns.message.from_wire, corpus, 2, options.repeats)

    table = Table(title=f"DNS response parsing, {len(corpus)} messages, best of {options.repeats}")
    table.add_column("parser")
    table.add_column("records/s", justify="right")
    table.add_column("µs/record", justify="right")
    table.add_column("speed-up", justify="right")
    rows = [
        (f"capture.dnswire ({'C path, ' if NATIVE_PARSE else 'not built: '}default)", ours),
        ("capture.dnswire (Python only)", python),
        ("dns.message.from_wire", theirs),
    ]
    for parser, rate in rows:
        table.add_row(parser, f"{rate:,.0f}", f"{1e6 / rate:.2f}", f"{rate / theirs:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
