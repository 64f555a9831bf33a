"""Fixtures of the sink integration tests: Kafka topics (helpers/sinkkafka.py), real
PostgreSQL and rsyslog servers (helpers/sinkservers.py), and the golden map corpus
(helpers/sinkcorpus.py)."""

from __future__ import annotations

import pytest
from helpers.sinkcorpus import load_jsonl
from helpers.sinkkafka import edges_topic
from helpers.sinkservers import postgres, rsyslog

from callmap.wire import Edge, PodIdentity, ServiceIdentity

__all__ = ["corpus_edges", "corpus_identities", "edges_topic", "postgres", "rsyslog"]


@pytest.fixture(scope="session")
def corpus_edges() -> list[Edge]:
    """The map corpus of the golden tests."""
    return load_jsonl("edges", Edge)


@pytest.fixture(scope="session")
def corpus_identities() -> tuple[list[PodIdentity], list[ServiceIdentity]]:
    """The corpus's pods and services."""
    return load_jsonl("pods", PodIdentity), load_jsonl("services", ServiceIdentity)
