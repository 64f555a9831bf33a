"""Fixtures of the sinks' unit tests: the map corpus and golden files.

The corpus and the golden files are described in tests/helpers/sinkcorpus.py.
``CALLMAP_UPDATE_GOLDEN=1`` rewrites the golden files (then read the diff
before committing it).
"""

from __future__ import annotations

import os

import pytest
from helpers.sinkcorpus import GOLDEN, Corpus, load_corpus


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return load_corpus()


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
