"""``callmap dev ...``: a local broker, an API server or a whole cluster, helm, schema files."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click
from rich.console import Console

from callmap.errors import CallmapError
from callmap.wire.schemas import render_schemas, write_schemas
from devtools.helm import helm
from devtools.kafka import DEFAULT_PORT, DevBroker, resolve_jars
from devtools.kafkacluster import DevKafkaCluster
from devtools.kubecli import kube

console = Console()


class _DevGroup(click.Group):
    """``dev``, whose ``cluster`` command comes from its own package, imported when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "cluster"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "cluster":
            command = getattr(importlib.import_module("devcluster.cli"), "cluster")  # noqa: B009
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_DevGroup)
def dev() -> None:
    """Development helpers: a local Kafka broker, a Kubernetes API server or whole cluster,
    schema files."""


@dev.group()
def kafka() -> None:
    """An Apache Kafka 4.x (KRaft) broker on loopback, or a cluster of three."""


_name = click.option("--name", default="dev", show_default=True, help="Broker instance name.")
_port = click.option("--port", default=DEFAULT_PORT, show_default=True, help="Client port.")
_brokers = click.option(
    "--brokers",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="3: three brokers on PORT..PORT+2 (controllers on the next three), topics with "
    "three replicas and min.insync.replicas 2.",
)


def _instance(name: str, port: int, brokers: str) -> DevBroker | DevKafkaCluster:
    return DevKafkaCluster.named(name, port) if brokers == "3" else DevBroker.named(name, port)


@kafka.command()
@_name
@_port
@_brokers
def start(name: str, port: int, brokers: str) -> None:
    """Start the broker (resolving its jars with Maven the first time); idempotent."""
    instance = _instance(name, port, brokers)
    before = instance.status()
    if not before.running:
        console.print(f"resolving Kafka jars into {resolve_jars().parent} ...")
    status = instance.start()
    verb = "already running" if before.running else "started"
    console.print(f"Kafka {verb}: bootstrap {status.bootstrap} (pid {status.pid})")
    console.print(f"  data and log in {status.directory}")
    console.print(f"  use it with: export CALLMAP_KAFKA_BOOTSTRAP={status.bootstrap}")


@kafka.command()
def fetch() -> None:
    """Resolve Kafka's and MirrorMaker 2's jars from Maven Central into the cache (once)."""
    from devtools.mirror import resolve_mirror_jars

    console.print(f"Kafka jars in {resolve_jars()}")
    console.print(f"MirrorMaker 2 jars in {resolve_mirror_jars()}")


@kafka.command()
@_name
@_port
@_brokers
def stop(name: str, port: int, brokers: str) -> None:
    """Stop the broker this machine's callmap started."""
    stopped = _instance(name, port, brokers).stop()
    console.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka.command()
@_name
@_port
@_brokers
def status(name: str, port: int, brokers: str) -> None:
    """Say whether the broker runs; exit 1 if it does not."""
    state = _instance(name, port, brokers).status()
    console.print(
        f"Kafka {state.detail}: bootstrap {state.bootstrap}"
        + (f" (pid {state.pid})" if state.pid else "")
    )
    if not state.running:
        sys.exit(1)


@dev.group()
def mirror() -> None:
    """Apache Kafka's MirrorMaker 2: clusters' callmap topics into a hub (docs/multicluster.md)."""


def _alias_address(value: str) -> tuple[str, str]:
    alias, _, address = value.partition("=")
    if not alias or not address:
        raise click.BadParameter(f"expected ALIAS=HOST:PORT, got {value!r}")
    return alias, address


def _sources(values: tuple[str, ...]) -> dict[str, str]:
    pairs = [_alias_address(value) for value in values]
    aliases = [alias for alias, _ in pairs]
    if len(set(aliases)) != len(aliases):
        raise click.BadParameter(f"each source needs an alias of its own: {', '.join(aliases)}")
    return dict(pairs)


_mirror_name = click.option("--name", default="dev", show_default=True, help="Mirror name.")


@mirror.command("start")
@_mirror_name
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    metavar="ALIAS=HOST:PORT",
    help="A cluster's broker (repeatable); its topics reach the hub as ALIAS.<topic>.",
)
@click.option("--hub", required=True, metavar="ALIAS=HOST:PORT", help="The hub's broker.")
@click.option(
    "--exactly-once/--at-least-once",
    default=True,
    show_default=True,
    help="Write to the hub in transactions: after a crash, readers that take committed "
    "records only (read_committed) see none twice.",
)
def mirror_start(name: str, sources: tuple[str, ...], hub: str, exactly_once: bool) -> None:
    """Start MirrorMaker 2 (resolving its jars with Maven the first time); idempotent."""
    from devtools.mirror import DevMirror

    instance = DevMirror.named(name, _sources(sources), _alias_address(hub), exactly_once)
    before = instance.status()
    try:
        pid = instance.start()
    except ValueError as exc:  # an alias MirrorMaker cannot use
        raise click.BadParameter(str(exc)) from None
    except CallmapError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "already running" if before.running else "started"
    flows = ", ".join(f"{source}->{target}" for source, target in instance.status().flows)
    console.print(f"MirrorMaker 2 {verb} (pid {pid}): {flows}")
    console.print(f"  log in {instance.log_file}")


@mirror.command("status")
@_mirror_name
def mirror_status(name: str) -> None:
    """Say whether the named MirrorMaker runs, and its flows (exit 1 if it does not run)."""
    from devtools.mirror import DevMirror

    instance = DevMirror.named(name)
    state = instance.status()
    if not state.running:
        console.print(f"MirrorMaker {name}: not running")
        sys.exit(1)
    flows = ", ".join(f"{source}->{target}" for source, target in state.flows)
    console.print(f"MirrorMaker {name}: running (pid {state.pid}): {flows}")
    console.print(f"  log in {instance.log_file}")


@mirror.command("stop")
@_mirror_name
def mirror_stop(name: str) -> None:
    """Stop the MirrorMaker this machine's callmap started."""
    from devtools.mirror import DevMirror

    stopped = DevMirror.named(name).stop()
    console.print(f"MirrorMaker {name}: " + ("stopped" if stopped else "was not running"))


dev.add_command(kube)
dev.add_command(helm)


@dev.command()
@click.option("--directory", type=click.Path(path_type=Path), default=Path("docs/schemas"))
@click.option("--check", is_flag=True, help="Fail if the files differ from the code.")
def schemas(directory: Path, check: bool) -> None:
    """Write the JSON Schema of every wire record into docs/schemas/."""
    if check:
        stale = [
            name
            for name, text in render_schemas().items()
            if not (directory / name).exists() or (directory / name).read_text() != text
        ]
        if stale:
            console.print(f"stale schema files: {', '.join(stale)}; run `callmap dev schemas`")
            sys.exit(1)
        console.print("schema files are current")
        return
    for path in write_schemas(directory):
        console.print(f"wrote {path}")
