"""How fast `capture.dnswire` parses DNS answers, next to dnspython's parser.

Builds one corpus of realistic responses with dnspython (its writer compresses
names like real servers do): single A answers for cluster.local services,
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
import ipaddress
import random
import time
from collections.abc import Callable
from functools import partial

import dns.message
import dns.rrset
from rich.console import Console
from rich.table import Table

from capture.dnswire import NATIVE_PARSE, DnsResponse, parse_response

_CLUSTER = "svc.cluster.local"
_NAMESPACES = ("default", "shop", "payments", "kube-system", "observability")
_SERVICES = ("web", "api", "cart", "checkout", "redis-master", "postgres", "kafka-0", "grafana")
_EXTERNAL = ("api.stripe.com", "s3.eu-west-1.amazonaws.com", "github.com", "pypi.org")
_CDN = ("edge.fastly.net", "d1.cloudfront.net", "lb.akamaiedge.net")


def _response(qname: str, qtype: str, records: list[tuple[str, int, str, list[str]]]) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=True)
    response = dns.message.make_response(query)
    for owner, ttl, rtype, values in records:
        response.answer.append(dns.rrset.from_text(owner + ".", ttl, "IN", rtype, *values))
    wire: bytes = response.to_wire()
    return wire


def _ipv4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _ipv6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address((0xFD00 << 112) | rng.getrandbits(64)))


def build_corpus(size: int = 400, seed: int = 7) -> list[bytes]:
    """Return `size` response messages in a fixed, realistic mix."""
    rng = random.Random(seed)
    corpus: list[bytes] = []
    while len(corpus) < size:
        service = f"{rng.choice(_SERVICES)}.{rng.choice(_NAMESPACES)}.{_CLUSTER}"
        kind = rng.randrange(10)
        if kind < 4:  # a ClusterIP service
            corpus.append(_response(service, "A", [(service, 30, "A", [_ipv4(rng)])]))
        elif kind == 4:  # a headless service: one A per ready pod
            pods = [_ipv4(rng) for _ in range(rng.randint(2, 5))]
            corpus.append(_response(service, "A", [(service, 30, "A", pods)]))
        elif kind == 5:
            corpus.append(_response(service, "AAAA", [(service, 30, "AAAA", [_ipv6(rng)])]))
        elif kind == 6:  # a pod name
            address = _ipv4(rng)
            name = f"{address.replace('.', '-')}.{rng.choice(_NAMESPACES)}.pod.cluster.local"
            corpus.append(_response(name, "A", [(name, 30, "A", [address])]))
        else:  # an external name behind a CNAME chain of one to three links
            name = rng.choice(_EXTERNAL)
            hops = [f"h{rng.randrange(99)}.{rng.choice(_CDN)}" for _ in range(kind - 6)]
            records = []
            for owner, target in zip([name, *hops], hops, strict=False):
                records.append((owner, rng.randint(60, 300), "CNAME", [target + "."]))
            addresses = [_ipv4(rng) for _ in range(rng.randint(1, 4))]
            qtype = "A"
            if rng.random() < 0.3:
                qtype, addresses = "AAAA", [_ipv6(rng) for _ in addresses]
            records.append((hops[-1], rng.randint(20, 60), qtype, addresses))
            corpus.append(_response(name, qtype, records))
    return corpus


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
