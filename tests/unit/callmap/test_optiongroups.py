"""Shared options reach a command as one built object, its own options by name."""

from __future__ import annotations

from dataclasses import dataclass

import click
from click.testing import CliRunner

from callmap.optiongroups import option_group


@dataclass(frozen=True)
class Window:
    seconds: float
    label: str


def window(*, seconds: float, label: str) -> Window:
    return Window(seconds, label.upper())


windowed = option_group(
    [click.option("--seconds", default=1.0), click.option("--label", default="w")], window
)
seen: list[tuple[Window, int]] = []


@click.command()
@click.option("--count", default=3)
@windowed
def run(built: Window, count: int) -> None:
    seen.append((built, count))


def test_the_shared_options_arrive_built_and_the_own_ones_by_name() -> None:
    seen.clear()
    result = CliRunner().invoke(run, ["--seconds", "2.5", "--label", "x", "--count", "7"])
    assert result.exit_code == 0, result.output
    assert seen == [(Window(2.5, "X"), 7)]


def test_every_option_shows_in_the_commands_help() -> None:
    help_text = CliRunner().invoke(run, ["--help"]).output
    assert all(flag in help_text for flag in ("--seconds", "--label", "--count"))
