"""The map corpus of the sink tests, and the directory of their golden files.

The corpus (``tests/golden/sinks/input-*.jsonl``) covers what every output
must handle: same- and cross-namespace calls, a service with two workloads, a
service whose name differs from its workload, a service with no workloads,
externals (one with an address), the API server, a node, an unresolved IP,
an expired edge, an edge seen by DNS only, a self edge, and hostile names in a
DNS name, a workload name, a namespace and a pod label. Golden files of every
output format live next to it.

The global corpus (``input-global-*.jsonl``) is a hand-written map of two
clusters as an aggregator publishes it: east's frontend calls east's cart,
west's api through its clusterset service, west's ledger by pod address and an
external; west's reporter calls east's cart; each cluster has a call of its
own; east and west both have a workload named ``api`` with different labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from callmap.wire import Edge, PodIdentity, ServiceIdentity

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "sinks"
HOSTILE = 'evil"name\n<script>,;|\\x00\u202e.example'
"""A name that tries to break every format: quotes, a line break, markup, CSV and
CEF separators, an escape sequence and a right-to-left override."""
T = TypeVar("T")


def load_jsonl(name: str, kind: type[T]) -> list[T]:
    """The records of ``input-<name>.jsonl``."""
    lines = (GOLDEN / f"input-{name}.jsonl").read_bytes().splitlines()
    return [msgspec.json.decode(line, type=kind) for line in lines if line.strip()]


@dataclass(frozen=True)
class Corpus:
    edges: list[Edge]
    pods: list[PodIdentity]
    services: list[ServiceIdentity]


def load_global_corpus() -> Corpus:
    return Corpus(load_jsonl("global-edges", Edge), load_jsonl("global-pods", PodIdentity), [])


def load_corpus() -> Corpus:
    return Corpus(
        load_jsonl("edges", Edge),
        load_jsonl("pods", PodIdentity),
        load_jsonl("services", ServiceIdentity),
    )
