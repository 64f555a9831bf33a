"""`callmap dev kafka start|status|stop` manage a real broker, idempotently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from devtools.kafka import DevBroker
from devtools.kafkacluster import DevKafkaCluster
from devtools.process import free_ports

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


@pytest.mark.parametrize("brokers", [1, 3])
def test_start_status_stop(brokers: int) -> None:
    name, port = f"test-{uuid.uuid4().hex[:8]}", free_ports(2 * brokers)
    common = ["--name", name, "--port", str(port), "--brokers", str(brokers)]
    bootstrap = ",".join(f"127.0.0.1:{port + n}" for n in range(brokers))
    try:
        started = _callmap("dev", "kafka", "start", *common)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"bootstrap {bootstrap}" in started.stdout

        again = _callmap("dev", "kafka", "start", *common)
        assert again.returncode == 0 and "already running" in again.stdout

        status = _callmap("dev", "kafka", "status", *common)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stopped = _callmap("dev", "kafka", "stop", *common)
    assert stopped.returncode == 0 and "Kafka stopped" in stopped.stdout

    after = _callmap("dev", "kafka", "status", *common)
    stopped_detail = "not started" if brokers == 1 else "0 of 3 brokers running"
    assert after.returncode == 1 and stopped_detail in after.stdout
    assert "was not running" in _callmap("dev", "kafka", "stop", *common).stdout
    instance = DevKafkaCluster.named(name, port) if brokers == 3 else DevBroker.named(name)
    shutil.rmtree(instance.directory)
