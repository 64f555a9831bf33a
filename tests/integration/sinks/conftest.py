"""Fixtures of the sink integration tests: Kafka topics (sinkkafka.py), real
PostgreSQL and rsyslog servers (sinkservers.py), and the golden map corpus."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from helpers.sinkkafka import edges_topic
from helpers.sinkservers import postgres, rsyslog

from callmap.wire import Edge, PodIdentity, ServiceIdentity

__all__ = ["corpus_edges", "corpus_identities", "edges_topic", "postgres", "rsyslog"]

CORPUS = Path(__file__).resolve().parents[2] / "golden" / "sinks"
T = TypeVar("T")


def _load(name: str, kind: type[T]) -> list[T]:
    lines = (CORPUS / f"input-{name}.jsonl").read_bytes().splitlines()
    return [msgspec.json.decode(line, type=kind) for line in lines]


@pytest.fixture(scope="session")
def corpus_edges() -> list[Edge]:
    """The map corpus of the golden tests (see tests/unit/sinks/conftest.py)."""
    return _load("edges", Edge)


@pytest.fixture(scope="session")
def corpus_identities() -> tuple[list[PodIdentity], list[ServiceIdentity]]:
    """The corpus's pods and services."""
    return _load("pods", PodIdentity), _load("services", ServiceIdentity)
