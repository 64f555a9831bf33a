"""Capture's publisher through a cut link and a broker whose disk filled up, in short
forms (20 s, a modest load) that `make test` runs; `make faults` runs them for a
minute at the rated load (tests/faults/test_capture_faults.py, docs/reliability.md).
Every answer must reach Kafka once the broker is reachable again."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.captureload import (
    WINDOW,
    Published,
    Timing,
    expected,
    through_full_disk,
    through_link_cut,
)
from helpers.labfixtures import skip_without_root

pytestmark = [pytest.mark.kafka, pytest.mark.netns]

RATE = 1_000
TIMING = Timing(before=5.0, outage=20.0, after=5.0)


def assert_nothing_lost(run: Published, seen: set[str]) -> None:
    lost = expected(run.sent) - seen
    assert run.drained and not lost, f"{len(lost)} answers lost, {run.dropped} counted as dropped"
    held = run.most_waiting * WINDOW
    assert held >= TIMING.outage / 2, f"the fault held back only {held:.0f} s of answers"


async def test_nothing_is_lost_while_the_link_to_the_broker_is_cut(tmp_path: Path) -> None:
    skip_without_root()
    run, seen = await through_link_cut(tmp_path / "kafka", RATE, TIMING)
    assert_nothing_lost(run, set(seen))


async def test_nothing_is_lost_while_the_brokers_disk_is_full(tmp_path: Path) -> None:
    skip_without_root()
    run, seen, stopped = await through_full_disk(tmp_path / "kafka", RATE, TIMING)
    assert stopped, "the broker ran on with a full disk: no fault happened"
    assert_nothing_lost(run, set(seen))
