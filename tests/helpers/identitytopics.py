"""What a consumer of the identity topics sees, for the watcher's tests."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from callmap.config import Settings
from callmap.counters import StageCounters
from watch.identitytable import IdentityTables
from watch.readback import read_back


async def topics(settings: Settings, cluster: str) -> IdentityTables:
    """What a consumer reading the identity topics from the start sees for ``cluster``."""
    state = IdentityTables(math.inf, lambda change: None)
    await read_back(settings.kafka, cluster, state.adopt, StageCounters())
    return state


async def eventually(
    settings: Settings, cluster: str, check: Callable[[IdentityTables], None], timeout: float = 20
) -> IdentityTables:
    """The topics' state once ``check`` stops raising AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        state = await topics(settings, cluster)
        try:
            check(state)
            return state
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)
