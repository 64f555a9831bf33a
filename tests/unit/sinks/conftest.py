"""Fixtures of the sinks' unit tests: the map corpus and golden files.

The corpus (``tests/golden/sinks/input-*.jsonl``) covers what every output
must handle: same- and cross-namespace calls, a service with two workloads, a
service whose name differs from its workload, a service with no workloads,
externals (one with an address), the API server, a node, an unresolved IP,
an expired edge, an edge seen by DNS only, a self edge, and hostile names in a
DNS name, a workload name, a namespace and a pod label.

Golden files live next to it; ``CALLMAP_UPDATE_GOLDEN=1`` rewrites them (then
read the diff before committing it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from callmap.wire import Edge, PodIdentity, ServiceIdentity

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "sinks"
HOSTILE = 'evil"name\n<script>,;|\\x00\u202e.example'
T = TypeVar("T")


def load_jsonl(name: str, kind: type[T]) -> list[T]:
    lines = (GOLDEN / f"input-{name}.jsonl").read_bytes().splitlines()
    return [msgspec.json.decode(line, type=kind) for line in lines if line.strip()]


@dataclass(frozen=True)
class Corpus:
    edges: list[Edge]
    pods: list[PodIdentity]
    services: list[ServiceIdentity]


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus(
        load_jsonl("edges", Edge),
        load_jsonl("pods", PodIdentity),
        load_jsonl("services", ServiceIdentity),
    )


class Golden:
    """Compares an output with its golden file (or rewrites it when asked)."""

    update = os.environ.get("CALLMAP_UPDATE_GOLDEN") == "1"

    def check(self, name: str, actual: str | bytes) -> None:
        path = GOLDEN / name
        data = actual.encode() if isinstance(actual, str) else actual
        if self.update or not path.exists():
            path.write_bytes(data)
            if not self.update:
                pytest.fail(f"golden file {path.name} was missing and has been written: review it")
        assert data == path.read_bytes(), f"output differs from {path.name}"


@pytest.fixture
def golden() -> Golden:
    return Golden()
