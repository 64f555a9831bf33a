"""`callmap dev mirror start|status|stop` run Kafka's MirrorMaker 2 between real brokers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from helpers.kafkakit import broker_settings

from callmap.broker import ensure_topics
from callmap.wire import EDGES
from devtools.kafka import DevBroker
from devtools.mirror import DevMirror, wait_mirrored
from devtools.process import free_port

pytestmark = pytest.mark.kafka


def _callmap(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLMAP_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "callmap", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.fixture
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    east = DevBroker(tmp_path_factory.mktemp("east"), port=free_port())
    hub = DevBroker(tmp_path_factory.mktemp("hub"), port=free_port())
    try:
        east.start()
        hub.start()
        yield east.bootstrap, hub.bootstrap
    finally:
        east.stop()
        hub.stop()


def test_start_status_stop(brokers: tuple[str, str]) -> None:
    east, hub = brokers
    settings = broker_settings(east)
    asyncio.run(ensure_topics(settings.kafka, settings.topics, [EDGES]))
    name = f"test-{uuid.uuid4().hex[:8]}"
    try:
        flows = ["--source", f"east={east}", "--hub", f"hub={hub}"]
        started = _callmap("dev", "mirror", "start", "--name", name, *flows)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "started" in started.stdout and "east->hub" in started.stdout
        wait_mirrored(hub, [f"east.{EDGES.name}"], timeout=120)
        status = _callmap("dev", "mirror", "status", "--name", name)
        assert status.returncode == 0 and "running" in status.stdout
        assert "east->hub" in status.stdout

        again = _callmap("dev", "mirror", "start", "--name", name, *flows)
        assert again.returncode == 0 and "already running" in again.stdout
        other = _callmap("dev", "mirror", "start", "--name", name, "--source", f"west={east}",
                         "--hub", f"hub={hub}")  # fmt: skip
        assert other.returncode != 0 and "stop it first" in other.stderr
    finally:
        stopped = _callmap("dev", "mirror", "stop", "--name", name)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    after = _callmap("dev", "mirror", "status", "--name", name)
    assert after.returncode == 1 and "not running" in after.stdout
    shutil.rmtree(DevMirror.named(name).directory)
