"""`callmap --help` lists every part; unbuilt parts say so and fail."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from callmap.cli import COMMANDS, EX_UNAVAILABLE, PLANNED, Lazy, cli

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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_summary_is_the_commands_own(name: str) -> None:
    """``callmap --help`` lists summaries without importing the commands: they cannot drift."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert COMMANDS[name].summary == command.get_short_help_str(limit=1000)


HEAVY = ("faust", "mode", "aiokafka", "kubernetes_asyncio", "scapy", "asyncpg")

IMPORTS_AFTER = """
import sys
from callmap.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="callmap", standalone_mode=False)
except SystemExit:
    pass
print("imported:", *sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--help"], set()),
        (["watch", "--help"], {"kubernetes_asyncio"}),
        (["capture", "dns", "--help"], {"aiokafka"}),
        (["streams", "--help"], {"aiokafka"}),
    ],
)
def test_asking_for_help_imports_no_service_it_does_not_show(
    args: list[str], allowed: set[str]
) -> None:
    code = IMPORTS_AFTER.format(heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    imported = set(result.stderr.splitlines()[-1].split()[1:])
    assert imported <= allowed, f"callmap {' '.join(args)} imported {imported - allowed}"


def test_a_development_command_missing_from_an_install_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(COMMANDS, "dev", Lazy("devtools.nowhere:dev", "Development helpers."))
    monkeypatch.setitem(sys.modules, "devtools.nowhere", None)  # as in the image: not there
    result = CliRunner().invoke(cli, ["dev", "kafka", "start"])
    assert result.exit_code == EX_UNAVAILABLE
    assert "not installed here" in result.output
