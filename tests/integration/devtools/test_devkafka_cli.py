"""`callmap dev kafka start|status|stop` manage a real broker, idempotently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from devtools.kafka import DevBroker
from devtools.process import free_port

pytestmark = pytest.mark.kafka


def _callmap(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLMAP_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "callmap", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_start_status_stop() -> None:
    name, port = f"test-{uuid.uuid4().hex[:8]}", str(free_port())
    common = ["--name", name, "--port", port]
    try:
        started = _callmap("dev", "kafka", "start", *common)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"bootstrap 127.0.0.1:{port}" in started.stdout

        again = _callmap("dev", "kafka", "start", *common)
        assert again.returncode == 0 and "already running" in again.stdout

        status = _callmap("dev", "kafka", "status", *common)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stopped = _callmap("dev", "kafka", "stop", *common)
    assert stopped.returncode == 0 and "Kafka stopped" in stopped.stdout

    after = _callmap("dev", "kafka", "status", *common)
    assert after.returncode == 1 and "not started" in after.stdout
    assert "was not running" in _callmap("dev", "kafka", "stop", *common).stdout
    shutil.rmtree(DevBroker.named(name).directory)
