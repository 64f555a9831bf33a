"""Every long-running command that needs Kafka gives it a start-up budget, then fails loudly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = '{"cluster": "lab", "nodes": [{"name": "node-a", "ips": ["192.168.9.9"]}]}'
COMMANDS = {
    "streams worker": ["streams", "worker", "--metrics-port", "0"],
    "aggregate": ["aggregate", "--peers", "east,west", "--metrics-port", "0"],
    "watch": ["watch", "--inventory", "inventory.json", "--metrics-port", "0"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_command_that_never_reaches_kafka_retries_then_exits_non_zero(
    command: list[str], tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "inventory.json").write_text(INVENTORY)
    environment = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    result = subprocess.run(
        [sys.executable, "-m", "callmap", *command, "--start-timeout", "3"],
        env=environment,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0, result.stderr
    assert "create topics" in result.stderr and "retrying in" in result.stderr, result.stderr
