"""`callmap --help` lists every part; unbuilt parts say so and fail."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

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
    monkeypatch.setitem(sys.modules, "devtools", None)  # as in the image: not installed
    result = CliRunner().invoke(cli, ["dev", "kafka", "start"])
    assert result.exit_code == EX_UNAVAILABLE
    assert "callmap dev: not installed here" in result.output


@click.command()
def _builds_a_lab() -> None:
    """Needs the development tools only once it runs, as `callmap lab up` does."""
    importlib.import_module("devtools.kube")


def test_a_command_that_needs_the_development_tools_as_it_runs_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("labless")
    module.up = _builds_a_lab  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "labless", module)
    monkeypatch.setitem(COMMANDS, "lab", Lazy("labless:up", "Builds a lab."))
    monkeypatch.setitem(sys.modules, "devtools", None)
    monkeypatch.delitem(sys.modules, "devtools.kube", raising=False)
    result = CliRunner().invoke(cli, ["lab"])
    assert result.exit_code == EX_UNAVAILABLE
    assert "callmap lab: not installed here" in result.output


def test_a_missing_module_inside_an_installed_package_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(COMMANDS, "dev", Lazy("devtools.nowhere:dev", "Development helpers."))
    result = CliRunner().invoke(cli, ["dev"])
    assert isinstance(result.exception, ModuleNotFoundError)  # a bug: its traceback shows


# What the image runs: its packages, and the commands the chart and the compose file start.
IMAGE_PACKAGES = ("callmap", "capture", "watch", "streams", "aggregate", "sinks")
IMAGE_COMMANDS = [
    ["capture", "run", "--help"],
    ["capture", "dns", "--help"],
    ["watch", "--help"],
    ["streams", "worker", "--help"],
    ["aggregate", "--help"],
    ["sink", "sqlite", "--help"],
    ["topics", "create", "--help"],
    ["list", "--help"],
    ["lab", "--help"],
]

WITHOUT_DEVELOPMENT_TOOLS = """
import importlib, pkgutil, sys
from click.testing import CliRunner
sys.modules["devtools"] = sys.modules["devcluster"] = None  # as in the image: not installed
for package in {packages!r}:
    root = importlib.import_module(package)
    for found in pkgutil.walk_packages(root.__path__, package + "."):
        if not found.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(found.name)
importlib.import_module("lab.caller")  # the program in every lab pod
from callmap.cli import cli
for args in {commands!r}:
    result = CliRunner().invoke(cli, args)
    print(result.exit_code, *args, file=sys.stderr)
result = CliRunner().invoke(cli, ["dev", "kafka", "start"])
print(result.exit_code, "dev", result.output.strip(), file=sys.stderr)
"""


def test_what_the_image_runs_needs_no_development_tool() -> None:
    """devtools/ and devcluster/ are not in the image: nothing a pod runs may import them."""
    code = WITHOUT_DEVELOPMENT_TOOLS.format(packages=IMAGE_PACKAGES, commands=IMAGE_COMMANDS)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for args in IMAGE_COMMANDS:
        assert f"0 {' '.join(args)}" in lines, result.stderr
    assert f"{EX_UNAVAILABLE} dev callmap dev: not installed here" in result.stderr
