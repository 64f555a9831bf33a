"""A worker whose edge log cannot commit says so on ``/healthz``, and is well again after.

The broker is the test's own, and is frozen (SIGSTOP) while calls stream in: the
worker's open transaction cannot commit, which holds its partition and the
worker's consumption with it. The chart's liveness probe asks ``/healthz``;
the truth is that endpoint's own answer, and the broker being frozen.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers.callload import CallLoad
from helpers.kafkakit import stoppable_broker
from helpers.streamkit import Worker

from callmap.broker import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

STALL_LIMIT = 2.0
FROZEN = 8.0  # seconds: past the stall limit, short of the transaction and session timeouts


def healthz(worker: Worker) -> tuple[int, str]:
    url = f"http://127.0.0.1:{worker.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


async def answers_during(worker: Worker, seconds: float) -> list[tuple[int, str]]:
    """``/healthz`` asked every half second for ``seconds``."""
    answers = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answers.append(await asyncio.to_thread(healthz, worker))
        await asyncio.sleep(0.5)
    return answers


async def test_a_frozen_broker_makes_healthz_report_the_stuck_edge_log_until_it_thaws(
    tmp_path: Path,
) -> None:
    async with stoppable_broker(tmp_path / "kafka", 3) as (broker, settings):
        await ensure_topics(settings.kafka, settings.topics)
        load = CallLoad(settings, f"stall-{uuid.uuid4().hex[:6]}", random.Random(7))
        await load.identities()
        # Transactions open for 2 s at a time: one is open whenever the broker freezes.
        worker = Worker(
            settings,
            f"stall-{uuid.uuid4().hex[:6]}",
            tmp_path,
            "--commit-interval",
            "2",
            "--stall-limit",
            str(STALL_LIMIT),
        )
        loading = asyncio.create_task(load.run())
        try:
            await asyncio.to_thread(worker.wait_ready)
            await asyncio.to_thread(worker.wait_owning)
            assert healthz(worker) == (200, "ok\n")

            pid = broker.status().pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                frozen = await answers_during(worker, FROZEN)
                busy = await asyncio.to_thread(worker.gauge, "edge_log_busy_seconds")
            finally:
                os.kill(pid, signal.SIGCONT)
            thawed = await answers_during(worker, 20.0)
        finally:
            load.stop.set()
            await loading
            worker.stop()

    assert frozen[0] == (200, "ok\n"), frozen
    stuck = [body for status, body in frozen if status == 503]
    assert stuck, frozen
    assert "the edge log's write or commit of partition" in stuck[-1], stuck[-1]
    assert busy > STALL_LIMIT
    assert thawed[-1] == (200, "ok\n"), thawed
    assert worker.process.returncode == 0, worker.log.read_text()[-3000:]
