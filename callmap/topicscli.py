"""``callmap topics``: create and describe callmap's Kafka topics, and print each
component's ACLs, as an operator would."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from callmap.acls import AGGREGATE_GROUP, COMPONENTS, component_acls, kafka_acls_command
from callmap.broker import TopicState, describe_topics, ensure_topics
from callmap.config import load_settings
from callmap.wire.topics import ALL_TOPICS, DEFAULT_STREAMS_APP

console = Console()


@click.group()
def topics() -> None:
    """Create and describe callmap's Kafka topics (settings from CALLMAP_* variables)."""


@topics.command()
def create() -> None:
    """Create every missing callmap topic with its partitions and cleanup policy."""
    settings = load_settings()
    states = asyncio.run(ensure_topics(settings.kafka, settings.topics))
    console.print(_topic_table(states))


@topics.command()
def describe() -> None:
    """Show partitions and cleanup settings of callmap's topics."""
    settings = load_settings()
    states = asyncio.run(describe_topics(settings.kafka, [s.name for s in ALL_TOPICS]))
    console.print(_topic_table(states))


def _topic_table(states: list[TopicState]) -> Table:
    table = Table(title="callmap topics")
    for column in ("topic", "partitions", "cleanup.policy", "retention.ms", "state"):
        table.add_column(column)
    for state in states:
        table.add_row(
            state.name,
            str(state.partitions),
            state.configs.get("cleanup.policy", "?"),
            state.configs.get("retention.ms", "?"),
            "created" if state.created else "exists",
        )
    return table


@topics.command()
@click.argument("component", type=click.Choice(COMPONENTS))
@click.option("--principal", help="The component's Kafka principal [User:<component>].")
@click.option(
    "--app-id", default=DEFAULT_STREAMS_APP, show_default=True, help="The stream app's id."
)
@click.option("--cluster", default="default", show_default=True, help="The watcher's cluster.")
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    help="A cluster whose topics MirrorMaker 2 copies to the aggregator's hub (repeatable).",
)
@click.option(
    "--group", default=AGGREGATE_GROUP, show_default=True, help="The aggregator's consumer group."
)
def acls(
    component: str,
    principal: str | None,
    app_id: str,
    cluster: str,
    aliases: tuple[str, ...],
    group: str,
) -> None:
    """Print the kafka-acls.sh commands that grant COMPONENT what it needs, and no more."""
    who = principal or f"User:{component}"
    for acl in component_acls(
        component, app_id=app_id, cluster=cluster, aliases=aliases, group=group
    ):
        click.echo(kafka_acls_command(acl, who))
