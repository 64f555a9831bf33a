"""``callmap sink KIND``: run one sink on the edges topic until stopped.

Every kind shares the consumer options (group, batch size, flush interval,
backoff, metrics port, ``--once``) and the loop of :mod:`sinks.service.runner`.
Each command turns its options (and the environment) into one settings object
of :mod:`sinks.service.settings`, which makes the destination. SIGTERM or
SIGINT makes the sink flush, commit and exit; while the target is down, it
exits without committing (the next run replays, idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import click

from callmap.config import load_settings
from callmap.errors import CallmapError, ConfigError, TemporaryError
from callmap.metrics import serve_metrics
from callmap.optiongroups import metrics_port_option, option_group, start_timeout_option
from callmap.signals import on_stop_signals
from sinks.escape import terminal
from sinks.service.destination import Sink
from sinks.service.destinations.linefile import DEFAULT_MAX_BYTES
from sinks.service.formats.cef import FACILITIES, SyslogFormat
from sinks.service.runner import SinkRunner
from sinks.service.settings import (
    JsonlSettings,
    OcsfSettings,
    PostgresSettings,
    SinkRun,
    SinkSettings,
    SqliteSettings,
    SyslogSettings,
)
from sinks.service.stats import SinkCollector

log = logging.getLogger(__name__)


def _sink_run(
    *,
    group: str | None,
    batch_size: int,
    flush_interval: float,
    max_backoff: float,
    start_timeout: float,
    metrics_port: int,
    once: bool,
    cluster: tuple[str, ...],
    global_edges: bool,
) -> SinkRun:
    """The options every kind shares, with the Kafka settings of the environment."""
    try:
        kafka = load_settings().kafka
    except CallmapError as exc:
        raise click.ClickException(terminal(str(exc))) from exc
    return SinkRun(
        group,
        batch_size,
        flush_interval,
        max_backoff,
        start_timeout,
        metrics_port,
        once,
        kafka,
        clusters=frozenset(cluster),
        global_edges=global_edges,
    )


_runner_options = option_group(
    [
        click.option("--group", help="Kafka consumer group [callmap-sink-KIND]."),
        click.option("--batch-size", default=500, show_default=True, help="Records per flush."),
        click.option(
            "--flush-interval", default=1.0, show_default=True, help="Max seconds records wait."
        ),
        click.option(
            "--max-backoff", default=30.0, show_default=True, help="Max seconds between retries."
        ),
        start_timeout_option(),
        metrics_port_option(9810),
        click.option("--once", is_flag=True, help="Write what the topic holds now, then exit."),
        click.option(
            "--cluster", multiple=True, help="Only edges with a side in this cluster (repeat)."
        ),
        click.option(
            "--global",
            "global_edges",
            is_flag=True,
            help="Read the hub's global edges (callmap aggregate) instead of a cluster's.",
        ),
    ],
    _sink_run,
)
"""The options every kind shares, given to the command first as one SinkRun."""


async def run_sink(sink: Sink, settings: SinkSettings) -> bool:
    """Run ``sink`` until stopped (or caught up with ``--once``); True if it ended committed."""
    run = settings.run
    serve_metrics(run.metrics_port, SinkCollector(sink.stats, lambda: sink.buffered))
    runner = SinkRunner(run.kafka, sink, run.runner_options(settings.kind))
    on_stop_signals(runner.request_stop)  # the runner flushes and commits what it holds
    committed = True
    try:
        await runner.start()
        await runner.run(until_caught_up=run.once)
    except TemporaryError as exc:
        if not runner.stop_requested.is_set():
            raise  # not asked to stop: a failure (Kafka never reached at start), exit non-zero
        log.warning("stopped while the target was away: %s", exc)
        committed = False
    finally:
        await runner.close(commit=committed)
    return committed


def run_command(settings: SinkSettings) -> None:
    """``callmap sink KIND``: make the destination, run it, and say what it did."""
    sink_ = settings.sink()
    try:
        asyncio.run(run_sink(sink_, settings))
    except CallmapError as exc:
        raise click.ClickException(terminal(str(exc))) from exc
    finally:
        click.echo(sink_.stats.summary(), err=True)


@click.group()
def sink() -> None:
    """Write the edges topic to files, SQLite, PostgreSQL or SIEM feeds."""


@sink.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True, help="Rotate at this size."
)
@click.option("--keep", default=0, show_default=True, help="Files to keep; 0 keeps all.")
@click.option(
    "--format",
    "line_format",
    type=click.Choice(["edge", "ecs"]),
    default="edge",
    show_default=True,
    help="Lines of wire edges (edges-*.jsonl) or of ECS documents (ecs-*.jsonl).",
)
@_runner_options
def jsonl(run: SinkRun, directory: Path, max_bytes: int, keep: int, line_format: str) -> None:
    """JSON Lines of edge events, rotated by size, fsynced before every commit."""
    run_command(JsonlSettings(run, directory, max_bytes, keep, line_format))


@sink.command()
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--busy-timeout", default=5.0, show_default=True, help="Seconds to wait for a lock.")
@_runner_options
def sqlite(run: SinkRun, path: Path, busy_timeout: float) -> None:
    """Current state and history of every edge in a SQLite file (the embedded default)."""
    run_command(SqliteSettings(run, path, busy_timeout))


@sink.command()
@click.option(
    "--dsn", envvar="CALLMAP_POSTGRES_DSN", help="postgresql://... (env CALLMAP_POSTGRES_DSN)."
)
@click.option(
    "--dsn-file",
    envvar="CALLMAP_POSTGRES_DSN_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file holding the DSN, e.g. a mounted Secret (env CALLMAP_POSTGRES_DSN_FILE).",
)
@_runner_options
def postgres(run: SinkRun, dsn: str | None, dsn_file: Path | None) -> None:
    """Current state and history of every edge in PostgreSQL, upserted in batches."""
    if dsn_file is not None:
        dsn = dsn_file.read_text().strip()
    if not dsn:
        raise click.UsageError("give --dsn or --dsn-file (or CALLMAP_POSTGRES_DSN)")
    run_command(PostgresSettings(run, dsn))


@sink.command()
@click.option(
    "--target", envvar="CALLMAP_SYSLOG_TARGET", required=True, help="udp|tcp|tls://HOST[:PORT]."
)
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="TLS: trusted CAs.")
@click.option("--cert-file", type=click.Path(exists=True, dir_okay=False), help="TLS: client cert.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), help="TLS: client key.")
@click.option("--server-name", help="TLS: name to verify the receiver's certificate against.")
@click.option(
    "--facility", type=click.Choice(sorted(FACILITIES)), default="local0", show_default=True
)
@click.option(
    "--hostname", default=socket.gethostname, show_default="host name", envvar="CALLMAP_NODE"
)
@click.option("--sd-id", default="callmap@32473", show_default=True, help="Structured-data id.")
@click.option("--max-message", default=8192, show_default=True, help="Bytes per message (UDP).")
@click.option(
    "--format",
    "payload",
    type=click.Choice(["cef", "ecs"]),
    default="cef",
    show_default=True,
    help="MSG holds a CEF record or an ECS document (JSON).",
)
@click.option(
    "--state", type=click.Path(dir_okay=False, path_type=Path), help="Offset journal file."
)
@_runner_options
def syslog(
    run: SinkRun,
    target: str,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    server_name: str | None,
    facility: str,
    hostname: str,
    sd_id: str,
    max_message: int,
    payload: str,
    state: Path | None,
) -> None:
    """RFC 5424 syslog carrying CEF or ECS, over UDP, TCP (octet counting) or TLS."""
    from sinks.service.destinations.syslog import SyslogTarget, TlsOptions

    try:
        parsed = SyslogTarget.parse(target)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from exc
    settings = SyslogSettings(
        run,
        target=parsed,
        form=SyslogFormat(
            hostname=hostname, facility=FACILITIES[facility], sd_id=sd_id, payload=payload
        ),
        tls=TlsOptions(ca_file, cert_file, key_file, server_name),
        max_message=max_message,
        state=state,
    )
    run_command(settings)


@sink.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write rotated files here.",
)
@click.option("--topic", help="Or produce to this Kafka topic (not created by callmap).")
@click.option(
    "--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True, help="--dir: rotate at this size."
)
@click.option("--keep", default=0, show_default=True, help="--dir: files to keep; 0 keeps all.")
@click.option(
    "--state", type=click.Path(dir_okay=False, path_type=Path), help="--topic: offset journal file."
)
@_runner_options
def ocsf(
    run: SinkRun,
    directory: Path | None,
    topic: str | None,
    max_bytes: int,
    keep: int,
    state: Path | None,
) -> None:
    """OCSF Network Activity (class 4001) events, to files or to a Kafka topic."""
    if (directory is None) == (topic is None):
        raise click.UsageError("give exactly one of --dir and --topic")
    run_command(OcsfSettings(run, directory, topic, max_bytes, keep, state))
