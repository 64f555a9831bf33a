"""The ``callmap`` command: one entry point for every part of callmap.

Service commands are loaded lazily from their own packages (``capture``,
``streams``, ``sinks``, ...) by dotted name, so the core never imports a
service and ``callmap --help`` stays fast. A planned command that is not built
yet is listed all the same; running it says so and exits with status 69
(EX_UNAVAILABLE), never silently.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, NoReturn

import click

from callmap import __version__

EX_UNAVAILABLE = 69

# name -> "package.module:attribute" of a built command, loaded on first use.
COMMANDS: dict[str, str] = {
    "capture": "capture.cli:capture",
    "demo": "lab.demo:demo",
    "dev": "callmap.devcli:dev",
    "export": "sinks.cli:export",
    "lab": "lab.cli:lab",
    "list": "sinks.cli:list_command",
    "sink": "sinks.sinkcli:sink",
    "visualize": "sinks.cli:visualize",
    "watch": "watch.cli:watch",
    "streams": "streams.cli:streams",
    "topics": "callmap.devcli:topics",
}

# name -> (what it will do, the issue that builds it).
PLANNED: dict[str, tuple[str, int]] = {}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are run or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *PLANNED})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, _, attribute = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        if cmd_name in PLANNED:
            return _planned(cmd_name, *PLANNED[cmd_name])
        return super().get_command(ctx, cmd_name)


def _planned(name: str, summary: str, issue: int) -> click.Command:
    def run(args: tuple[str, ...]) -> NoReturn:
        click.echo(
            f"callmap {name}: not built yet (issue #{issue}: {summary.rstrip('.')}).", err=True
        )
        sys.exit(EX_UNAVAILABLE)

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"{summary} [not built yet: issue #{issue}]",
        short_help=f"{summary} [not built yet]",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="callmap")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    envvar="CALLMAP_LOG_LEVEL",
    help="Log verbosity (env CALLMAP_LOG_LEVEL).",
)
def cli(log_level: str) -> None:
    """callmap: who calls whom inside Kubernetes clusters.

    Node agents (capture) watch DNS answers and socket tables, the stream app
    joins them with pod and service identities (watch) into deduplicated
    workload-to-workload edges on a compacted Kafka topic, and sinks and map
    commands turn those edges into files, databases, SIEM feeds and policies.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> Any:
    from callmap.errors import CallmapError

    try:
        return cli.main(args=argv, prog_name="callmap", standalone_mode=True)
    except CallmapError as exc:  # raised outside click's own handling, e.g. at load time
        click.echo(f"callmap: {exc}", err=True)
        sys.exit(1)
