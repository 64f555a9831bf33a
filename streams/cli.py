"""``callmap streams worker``: run one worker of the stream app."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from callmap.backoff import give_up_after, retrying
from callmap.broker import TopicState, ensure_topic, ensure_topics
from callmap.config import Settings, load_settings
from callmap.errors import ConfigError
from callmap.metrics import CountersCollector, serve_metrics
from callmap.optiongroups import metrics_port_option, start_timeout_option
from callmap.wire import ALL_TOPICS, DNS, PENDING, SIGHTINGS, SOCKETS, TopicSpec
from callmap.wire.topics import changelog_configs, changelog_topic, for_app
from streams.caps import DEFAULT_BATCH_RECORDS, DEFAULT_MESSAGE_BYTES, Caps
from streams.combine import DEFAULT_COMBINE_INTERVAL, DEFAULT_MAX_EDGES_PER_CLIENT
from streams.edgelog import DEFAULT_COMMIT_INTERVAL, DEFAULT_STALL_LIMIT
from streams.resolvestage import ResolveSettings


@click.group()
def streams() -> None:
    """Stream app: join capture events with identities into deduplicated edges."""


@streams.command()
@click.option(
    "--app-id",
    default="callmap-streams",
    show_default=True,
    envvar="CALLMAP_STREAMS_APP_ID",
    help="Consumer group of the workers.",
)
@click.option(
    "--grace",
    default=60.0,
    show_default=True,
    help="Seconds an event waits for identities that have not arrived.",
)
@click.option(
    "--refresh-interval",
    default=300.0,
    show_default=True,
    help="Seconds between two announcements of a live edge.",
)
@click.option(
    "--ttl",
    default=86400.0,
    show_default=True,
    help="Seconds without sightings before an edge expires.",
)
@click.option(
    "--tick-interval",
    default=10.0,
    show_default=True,
    help="Seconds between refresh and expiry checks.",
)
@click.option(
    "--combine-interval",
    default=DEFAULT_COMBINE_INTERVAL,
    show_default=True,
    help="Seconds repeats of a known edge are combined before they go to its owner (0: never).",
)
@click.option(
    "--commit-interval",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_COMMIT_INTERVAL,
    show_default=True,
    help="Seconds the edge transactions stay open: announcements wait up to this long.",
)
@click.option(
    "--stall-limit",
    type=click.FloatRange(min=1.0),
    default=DEFAULT_STALL_LIMIT,
    show_default=True,
    help="Seconds an edge write or commit may take before /healthz says the worker is stuck.",
)
@click.option(
    "--max-edges-per-client",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_EDGES_PER_CLIENT,
    show_default=True,
    help="Servers one client may reach within the TTL; beyond, dead-lettered (0: no cap).",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULT_MESSAGE_BYTES,
    show_default=True,
    help="Bytes of one message the worker takes; larger ones are dead-lettered.",
)
@click.option(
    "--max-batch-records",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_RECORDS,
    show_default=True,
    help="Records of one raw batch the worker takes; larger ones are dead-lettered.",
)
@click.option(
    "--exclude-namespace",
    "excluded",
    multiple=True,
    envvar="CALLMAP_EXCLUDE_NAMESPACES",
    help="Drop edges touching this namespace (repeat).",
)
@click.option(
    "--session-timeout",
    default=30.0,
    show_default=True,
    help="Seconds after which a silent worker's partitions go to the others.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    envvar="CALLMAP_STREAMS_DATA_DIR",
    help="Where Faust keeps its <app id>-data directory.",
)
@start_timeout_option()
@metrics_port_option(9809)
def worker(
    app_id: str,
    grace: float,
    refresh_interval: float,
    ttl: float,
    tick_interval: float,
    combine_interval: float,
    commit_interval: float,
    stall_limit: float,
    max_edges_per_client: int,
    max_message_bytes: int,
    max_batch_records: int,
    excluded: tuple[str, ...],
    session_timeout: float,
    data_dir: Path,
    start_timeout: float,
    metrics_port: int,
) -> None:
    """Run one worker; start several with the same --app-id to share the work."""
    from callmap.heap import settle
    from streams.faustapp import StreamApp, run_worker  # --help stays light
    from streams.settings import StreamSettings
    from streams.statsfeed import NodeLossCollector

    settings = load_settings()
    own = [for_app(SIGHTINGS, app_id), for_app(PENDING, app_id)]
    topics = [spec for spec in ALL_TOPICS if spec not in (SIGHTINGS, PENDING)] + own
    states = asyncio.run(_prepare_topics(settings, app_id, topics, start_timeout))
    check_co_partitioned(states, [DNS.name, SOCKETS.name, own[1].name])
    (sightings,) = [state for state in states if state.name == own[0].name]
    stream = StreamSettings(
        app_id=app_id,
        resolve=ResolveSettings(
            cluster_domain=settings.cluster_domain,
            excluded_namespaces=frozenset(n for item in excluded for n in item.split(",") if n),
            grace=grace,
        ),
        refresh_interval=refresh_interval,
        ttl=ttl,
        tick_interval=tick_interval,
        sighting_partitions=sightings.partitions,
        replication=sightings.replication,
        session_timeout=session_timeout,
        combine_interval=combine_interval,
        commit_interval=commit_interval,
        stall_limit=stall_limit,
        caps=Caps(
            message_bytes=max_message_bytes,
            batch_records=max_batch_records,
            edges_per_client=max_edges_per_client,
        ),
        data_dir=data_dir,
    )
    app = StreamApp(settings, stream)
    gauges = {
        "consumer_lag": (
            "Messages on this worker's partitions not consumed yet.",
            lambda: float(app.lag),
        ),
        "identities": (
            "Pods, services and nodes in the identity store.",
            lambda: float(app.feed.size()),
        ),
        "edges": (
            "Edges this worker owns (the states of its partitions).",
            lambda: float(len(app.merge.table)),
        ),
        "edge_log_busy_seconds": (
            "How long the longest unfinished edge write or commit has taken so far.",
            app.edge_log.busy_seconds,
        ),
    }
    collector = CountersCollector("streams", app.counters, gauges)
    registry = serve_metrics(metrics_port, collector, health=app.health)
    registry.register(NodeLossCollector(app.stats_feed))
    settle()  # set up: what exists now lives as long as the worker
    run_worker(app)


async def _prepare_topics(
    settings: Settings, app_id: str, topics: list[TopicSpec], start_timeout: float
) -> list[TopicState]:
    """Make sure ``topics`` and the app's changelog exist (as many partitions and
    replicas as its sightings topic), within one start-up budget; the states of
    ``topics``."""
    budget = give_up_after(start_timeout)
    states = await retrying(
        lambda: ensure_topics(settings.kafka, settings.topics, topics),
        "create topics",
        on_retry=budget,
    )
    (sightings,) = [s for s in states if s.name == for_app(SIGHTINGS, app_id).name]
    await retrying(
        lambda: ensure_topic(
            settings.kafka,
            changelog_topic(app_id),
            sightings.partitions,
            sightings.replication,
            changelog_configs(),
        ),
        "create the changelog topic",
        on_retry=budget,
    )
    return states


def check_co_partitioned(states: list[TopicState], names: list[str]) -> None:
    """Refuse topics keyed by node whose partition counts differ.

    A node's DNS answers, its sockets and its pending events must meet on one
    worker: its memory of the names each client asked is what names the
    client's connections. With different counts the same node key lands on
    different workers, and names would silently go missing.
    """
    counts = {state.name: state.partitions for state in states if state.name in names}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} has {count}" for name, count in sorted(counts.items()))
        raise ConfigError(
            f"topics keyed by node must have the same partition count ({listed}): "
            f"a node's DNS answers and sockets must meet on one worker; "
            f"add partitions to the smaller ones (kafka-topics.sh --alter --partitions "
            f"{max(counts.values())}) before starting the stream"
        )
