"""The stream app's tests run on a broker of their own (see `own_broker`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.kafkakit import own_broker

from callmap.config import Settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_broker(tmp_path_factory) as own:
        yield own
