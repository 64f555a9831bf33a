"""The fault suite, `make faults`: each scenario fails something for real (a
process, a broker) under a steady load on real brokers, and adds a row to the
table printed at the end of the run (kept in docs/reliability.md). A scenario
in which anything is lost or doubled fails.

`make test` leaves this directory out: the scenarios take minutes each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers.faultruns import HEADER, FaultRow
from helpers.kafkakit import own_broker
from helpers.sinkservers import postgres

from callmap.config import Settings

__all__ = ["postgres", "report", "settings"]

ROWS: list[FaultRow] = []


@pytest.fixture
def report() -> Callable[[FaultRow], None]:
    """Adds a row to the table (call it before asserting, so failures show too)."""
    return ROWS.append


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_broker(tmp_path_factory) as own:
        yield own


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    lines = [HEADER, ["---"] * len(HEADER), *(row.cells() for row in ROWS)]
    terminalreporter.section("fault suite")
    for cells in lines:
        terminalreporter.write_line("| " + " | ".join(cells) + " |")
