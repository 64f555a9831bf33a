"""`callmap --help` lists every part; unbuilt parts say so and fail."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from callmap.cli import EX_UNAVAILABLE, PLANNED, cli

EVERY_PART = [
    "capture",
    "watch",
    "streams",
    "sink",
    "list",
    "export",
    "visualize",
    "lab",
    "demo",
    "dev",
    "topics",
]


def test_help_lists_a_subcommand_for_every_part() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {
        line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()
    }
    assert set(EVERY_PART) <= listed


def test_dev_kafka_offers_start_stop_status() -> None:
    result = CliRunner().invoke(cli, ["dev", "kafka", "--help"])
    assert result.exit_code == 0
    for verb in ("start", "stop", "status", "fetch"):
        assert verb in result.output


def test_a_part_not_built_yet_says_so_and_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLANNED, "teleport", ("Move pods between clusters.", 99))
    listed = CliRunner().invoke(cli, ["--help"]).output
    assert "teleport" in listed and "[not built yet]" in listed
    result = CliRunner().invoke(cli, ["teleport", "--some-flag", "value"])
    assert result.exit_code == EX_UNAVAILABLE
    assert "not built yet" in result.output and "issue #99" in result.output


def test_the_installed_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callmap", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("callmap, version ")
