"""Stream workers under a steady load while something fails, and what reached the
edges topic, counted against the calls published (:mod:`helpers.callload`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import EDGES
from helpers.callload import CallLoad
from helpers.streamkit import Reader, Worker, names, of_cluster

WORKER_ARGS = ("--refresh-interval", "600", "--ttl", "600", "--session-timeout", "6")


@dataclass(frozen=True)
class Outcome:
    """Edges the published calls make, against the ``new`` announcements read."""

    truth: set[tuple[str, str]]
    news: Counter[tuple[str, str]]
    records: int
    load: str
    """What the calls were, in words."""
    recovery: float | None
    """Seconds from the last call published until every edge was announced."""
    context: str

    @property
    def lost(self) -> set[tuple[str, str]]:
        return self.truth - set(self.news)

    @property
    def doubled(self) -> dict[tuple[str, str], int]:
        return {edge: count for edge, count in self.news.items() if count > 1}

    def check(self) -> None:
        lost, doubled = self.lost, self.doubled
        assert not lost, f"{len(lost)} edges never new ({self.context}): {sorted(lost)[:5]}"
        assert not doubled, f"{len(doubled)} edges new twice ({self.context}): {doubled}"
        assert set(self.news) == self.truth, self.context


@dataclass(frozen=True)
class FaultRow:
    scenario: str
    load: str
    records_in: int
    expected: int
    seen: int
    lost: int
    doubled: int
    recovery: float | None
    """Seconds from the last record published until everything expected had arrived."""

    def cells(self) -> list[str]:
        recovery = "-" if self.recovery is None else f"{self.recovery:.1f} s"
        return [
            self.scenario,
            self.load,
            f"{self.records_in:,}",
            f"{self.expected:,}",
            f"{self.seen:,}",
            str(self.lost),
            str(self.doubled),
            recovery,
        ]


HEADER = ["scenario", "load", "records in", "expected", "seen", "lost", "doubled", "catch-up"]


def row(scenario: str, outcome: Outcome) -> FaultRow:
    """The fault suite's row of a run."""
    return FaultRow(
        scenario=scenario,
        load=outcome.load,
        records_in=outcome.records,
        expected=len(outcome.truth),
        seen=len(outcome.news),
        lost=len(outcome.lost),
        doubled=len(outcome.doubled),
        recovery=outcome.recovery,
    )


Fault = Callable[[list[Worker], random.Random], Awaitable[None]]
"""Does its harm to the running workers (it may replace them in the list)."""


async def under_load(
    settings: Settings,
    tmp_path: Path,
    fault: Fault,
    *,
    workers: int = 2,
    replication: str | None = "1",
    seed: int | None = None,
    clients: int = 4000,
    after: float = 10.0,
) -> Outcome:
    """Run ``workers`` stream workers, stream calls at them (up to ``clients`` new
    ones), do ``fault``, go on calling for ``after`` seconds, and read what was
    announced."""
    seed = time.time_ns() if seed is None else seed
    rng = random.Random(seed)
    cluster, app_id = f"c-{seed % 10**8}", f"streams-faults-{seed % 10**8}"
    await ensure_topics(settings.kafka, settings.topics)
    edges = await Reader(settings, EDGES.name).mark()
    load = CallLoad(settings, cluster, rng, max_clients=clients)
    await load.identities()
    running = [
        Worker(settings, app_id, tmp_path, *WORKER_ARGS, replication=replication)
        for _ in range(workers)
    ]
    try:
        for worker in running:
            worker.wait_ready()
        loading = asyncio.create_task(load.run())
        await fault(running, rng)
        await asyncio.sleep(after)
        load.stop.set()
        await loading
        load_ended = time.monotonic()
        truth = load.truth()
        found = await edges.read(
            of_cluster(cluster),
            until=lambda f: {names(e) for e in f if e.event == "new"} >= truth,
            settle=5,
            timeout=180,
        )
    finally:
        for worker in running:
            worker.stop()
    recovery = None if edges.held_at is None else max(0.0, edges.held_at - load_ended)
    return Outcome(
        truth=truth,
        news=Counter(names(e) for e in found if e.event == "new"),
        records=load.records,
        load=f"{load.describe()}, {workers} workers",
        recovery=recovery,
        context=f"seed {seed}, {load.records} calls, {len(truth)} edges",
    )


def killing(kills: int) -> Fault:
    """SIGKILL a random worker ``kills`` times, each a moment after every worker holds
    edges again (so that the kill lands in its work, not in a rebalance), and start
    another in its place."""

    async def fault(running: list[Worker], rng: random.Random) -> None:
        for _ in range(kills):
            for worker in running:
                await asyncio.to_thread(worker.wait_owning)
            await asyncio.sleep(rng.uniform(0.5, 2))
            victim = rng.randrange(len(running))
            running[victim].kill()
            running[victim] = running[victim].again()
        for worker in running:
            await asyncio.to_thread(worker.wait_owning)

    return fault
