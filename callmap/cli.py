"""The ``callmap`` command: one entry point for every part of callmap.

Service commands are loaded lazily from their own packages (``capture``,
``streams``, ``sinks``, ...) by dotted name, so the core never imports a
service and ``callmap --help`` stays fast. A planned command that is not built
yet is listed all the same; running it says so and exits with status 69
(EX_UNAVAILABLE), never silently. So does a command that needs the development
tools (``devtools``, ``devcluster``) where they are not installed, as in the
image: ``callmap dev`` and ``callmap demo`` when they load, a ``callmap lab``
command that builds a lab when it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from click.utils import make_default_short_help

from callmap import __version__

EX_UNAVAILABLE = 69


@dataclass(frozen=True, slots=True)
class Lazy:
    """A built command, imported only when it runs or shows its own help."""

    target: str
    """``package.module:attribute`` of the click command."""
    summary: str
    """Its one-line help for ``callmap --help`` (a test keeps it equal to the command's)."""


COMMANDS: dict[str, Lazy] = {
    "aggregate": Lazy(
        "aggregate.cli:aggregate",
        "Merge many clusters' edges at a hub into one map where every endpoint names its cluster.",
    ),
    "capture": Lazy("capture.cli:capture", "Node agent: DNS answers and socket tables to Kafka."),
    "demo": Lazy(
        "lab.demo:demo", "Map a real multi-pod network: the whole pipeline on one machine."
    ),
    "dev": Lazy(
        "devtools.cli:dev",
        "Development helpers: a local Kafka broker, a Kubernetes API server or whole cluster, "
        "schema files.",
    ),
    "export": Lazy(
        "sinks.maps.cli:export",
        "Export the map as ClientIntents, NetworkPolicies, CiliumNetworkPolicies, JSON or CSV.",
    ),
    "lab": Lazy(
        "lab.cli:lab", "A real multi-pod network in network namespaces, and its true edges."
    ),
    "list": Lazy(
        "sinks.maps.cli:list_command",
        'Print who calls whom: "X in namespace Y calls:" and its servers.',
    ),
    "metrics": Lazy(
        "sinks.maps.cli:metrics",
        "Serve the map to Prometheus: series per edge, as Grafana's service graph reads them.",
    ),
    "mcp": Lazy(
        "sinks.maps.cli:mcp",
        "Serve the map to AI assistants over the Model Context Protocol (read-only).",
    ),
    "serve": Lazy(
        "sinks.maps.cli:serve",
        "Serve the map, live, as a web page: filters, grouping, what changed, policies.",
    ),
    "sink": Lazy(
        "sinks.service.cli:sink",
        "Write the edges topic to files, SQLite, PostgreSQL or SIEM feeds.",
    ),
    "visualize": Lazy(
        "sinks.maps.cli:visualize",
        "Draw the map with Graphviz: namespaces as clusters, externals apart.",
    ),
    "watch": Lazy(
        "watch.cli:watch",
        "Publish pod, service and node identities (from a cluster or a file) to Kafka.",
    ),
    "streams": Lazy(
        "streams.cli:streams",
        "Stream app: join capture events with identities into deduplicated edges.",
    ),
    "topics": Lazy(
        "callmap.topicscli:topics",
        "Create and describe callmap's Kafka topics (settings from CALLMAP_* variables).",
    ),
}

# Packages a source checkout has and the image does not: the development tools.
DEVELOPMENT_ONLY = frozenset({"devtools", "devcluster"})

# name -> (what it will do, the issue that builds it).
PLANNED: dict[str, tuple[str, int]] = {}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they run or show their help.

    ``callmap --help`` lists them from :data:`COMMANDS` without importing any,
    so asking for help costs no service's imports (Faust alone is a quarter
    of a second).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *PLANNED})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return _load(cmd_name, COMMANDS[cmd_name])
        if cmd_name in PLANNED:
            return _planned(cmd_name, *PLANNED[cmd_name])
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if not _development_only(exc):
                raise
            _not_installed(ctx.invoked_subcommand or "")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                summary = make_default_short_help(COMMANDS[name].summary, limit)
            elif name in PLANNED:
                summary = f"{PLANNED[name][0]} [not built yet]"
            else:
                command = super().get_command(ctx, name)
                summary = command.get_short_help_str(limit) if command else ""
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _load(name: str, lazy: Lazy) -> click.Command:
    module_name, _, attribute = lazy.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _development_only(exc):
            return _unavailable(name)
        raise
    command = getattr(module, attribute)
    assert isinstance(command, click.Command)
    return command


def _development_only(exc: ModuleNotFoundError) -> bool:
    """True if what is missing is a development package, absent by design from the image.

    Only a package that is not installed at all counts: a missing module inside an
    installed one is a bug, and its traceback says where.
    """
    package = (exc.name or "").partition(".")[0]
    return package in DEVELOPMENT_ONLY and importlib.util.find_spec(package) is None


def _not_installed(name: str) -> NoReturn:
    why = "the development tools come with a source checkout only"
    click.echo(f"callmap {name}: not installed here ({why}).", err=True)
    sys.exit(EX_UNAVAILABLE)


def _unavailable(name: str) -> click.Command:
    def run(args: tuple[str, ...]) -> NoReturn:
        _not_installed(name)

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


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
