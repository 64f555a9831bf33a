"""The broker away for a minute and for ten, the link between capture and the broker
cut for a minute, or the broker's disk full for a minute, while a node's capture
publishes at its rated load: the outbox holds everything, and all of it reaches
Kafka once the broker is reachable again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.captureload import (
    DEFAULT_OUTBOX_MIB,
    WINDOW,
    Published,
    Timing,
    broker_away,
    delivered,
    expected,
    steady_load,
    through_full_disk,
    through_link_cut,
)
from helpers.faultruns import FaultRow
from helpers.kafkakit import stoppable_broker
from helpers.labfixtures import skip_without_root

from callmap.broker import ensure_topics
from callmap.wire import DNS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(1200)]

RATE = 3_500
"""DNS answers a second from one node: what the default 64 MiB outbox holds through a
broker stopped for 60 s and then started (about 70 s unreachable). At 4,000 a second
that run dropped 12,000 answers (counted as dropped)."""
OUTAGE = 60.0
LONG_OUTAGE = 600.0
LONG_OUTBOX_MIB = 640
"""What ten minutes at :data:`RATE` need (the default holds about 70 s)."""
BEFORE, AFTER = 10.0, 10.0  # seconds of publishing around the outage


def check(
    scenario: str,
    run: Published,
    seen: Counter[str],
    report: Callable[[FaultRow], None],
    outage: float = OUTAGE,
) -> None:
    wanted = expected(run.sent)
    lost = wanted - set(seen)
    report(
        FaultRow(
            scenario=scenario,
            load=f"{RATE:,} DNS answers/s from one node",
            records_in=run.sent,
            expected=len(wanted),
            seen=len(wanted & set(seen)),
            lost=len(lost),
            doubled=sum(1 for count in seen.values() if count > 1),
            recovery=run.recovery,
        )
    )
    assert run.drained and not lost, f"{len(lost)} answers lost, {run.dropped} counted as dropped"
    # The premise: the fault held capture back for most of the outage.
    assert run.most_waiting * WINDOW >= outage / 2, f"{run.most_waiting} messages at most"


@pytest.mark.parametrize(
    ("outage", "outbox_mib"),
    [(OUTAGE, DEFAULT_OUTBOX_MIB), (LONG_OUTAGE, LONG_OUTBOX_MIB)],
    ids=["a-minute", "ten-minutes"],
)
async def test_the_broker_away_at_the_rated_load(
    tmp_path: Path, report: Callable[[FaultRow], None], outage: float, outbox_mib: int
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 1) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics, [DNS])
        fault = asyncio.create_task(broker_away(broker, BEFORE, outage))
        run = await steady_load(settings, RATE, BEFORE + outage + AFTER, outbox_mib)
        await fault
        seen = await delivered(settings)
    scenario = f"capture: the broker away {outage:.0f} s ({outbox_mib} MiB outbox)"
    check(scenario, run, seen, report, outage)


async def test_the_link_between_capture_and_the_broker_cut_for_a_minute(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    """No reset, no refusal: requests wait for their timeouts, new connections find no
    route (:func:`helpers.captureload.through_link_cut`)."""
    skip_without_root()
    run, seen = await through_link_cut(tmp_path / "kafka", RATE, Timing(BEFORE, OUTAGE, AFTER))
    check(f"capture: its link to the broker cut {OUTAGE:.0f} s", run, seen, report)


async def test_the_brokers_disk_full_for_a_minute(
    tmp_path: Path, report: Callable[[FaultRow], None]
) -> None:
    """The broker fails its next write (Kafka stops a broker whose only log directory
    failed), and after a minute the space is freed and the broker started again."""
    skip_without_root()
    timing = Timing(BEFORE, OUTAGE, AFTER)
    run, seen, stopped = await through_full_disk(tmp_path / "kafka", RATE, timing)
    assert stopped, "the broker ran on with a full disk: no fault happened"
    check(f"capture: the broker's disk full {OUTAGE:.0f} s, then freed", run, seen, report)
