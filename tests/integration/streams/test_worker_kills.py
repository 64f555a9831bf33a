"""Workers killed with SIGKILL while calls stream in: every edge is announced ``new``
exactly once.

The truth is the set of calls this test publishes; the edges topic is read
with committed records only, as every callmap reader reads it. Each kill
comes a moment after both workers hold edges again, so that it lands in the
middle of their work (not in a rebalance, when nothing is in flight).
`make faults` runs the same with more kills.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.faultruns import killing, under_load

from callmap.config import Settings

pytestmark = pytest.mark.kafka


async def test_workers_killed_under_load_announce_every_edge_new_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    outcome = await under_load(settings, tmp_path, killing(6))
    outcome.check()
