"""What ``callmap sink KIND`` was asked, as one typed, frozen settings object per kind.

:mod:`sinks.service.cli` builds these once from the command line and the
environment; running a sink reads only them, so a misspelt option is a type
error rather than a ``KeyError`` at run time. Every kind holds a
:class:`SinkRun` (the consumer options all kinds share, and Kafka) and makes
its destination with :meth:`sink`. Destinations are imported when a sink is
made, so a command imports only the target it writes to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from callmap.config import KafkaSettings
from callmap.wire import EDGES, GLOBAL_EDGES
from sinks.service.destination import Sink
from sinks.service.formats.cef import SyslogFormat
from sinks.service.journal import OffsetJournal
from sinks.service.runner import RunnerOptions

if TYPE_CHECKING:  # the syslog destination is imported when a syslog sink is made
    from sinks.service.destinations.syslog import SyslogTarget, TlsOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SinkRun:
    """How ``callmap sink`` runs, whatever its kind: the options every kind shares."""

    group: str | None
    """The Kafka consumer group (``--group``); None: ``callmap-sink-KIND``
    (``callmap-sink-KIND-global`` with ``--global``)."""
    batch_size: int
    """Records per flush (``--batch-size``)."""
    flush_interval: float
    """Most seconds a record waits for its flush (``--flush-interval``)."""
    max_backoff: float
    """Most seconds between retries while the target is away (``--max-backoff``)."""
    start_timeout: float
    """Seconds to keep trying to reach Kafka at start before failing (``--start-timeout``)."""
    metrics_port: int
    """Prometheus port; 0 turns it off (``--metrics-port``, env ``CALLMAP_METRICS_PORT``)."""
    once: bool
    """Write what the topic holds now, then exit (``--once``)."""
    kafka: KafkaSettings
    """How to reach Kafka (``CALLMAP_KAFKA_*``)."""
    clusters: frozenset[str] = frozenset()
    """Only edges with the client or the server in one of these clusters (``--cluster``);
    empty: every edge."""
    global_edges: bool = False
    """Read the hub's global edges (``--global``) rather than a cluster's own."""

    def runner_options(self, kind: str) -> RunnerOptions:
        suffix = "-global" if self.global_edges else ""
        return RunnerOptions(
            group_id=self.group or f"callmap-sink-{kind}{suffix}",
            batch_size=self.batch_size,
            flush_interval=self.flush_interval,
            max_backoff=self.max_backoff,
            start_timeout=self.start_timeout,
            topic=GLOBAL_EDGES if self.global_edges else EDGES,
            clusters=self.clusters,
        )


class SinkSettings(Protocol):
    """What the settings of every kind offer the loop that runs it."""

    kind: ClassVar[str]
    """The kind, as ``callmap sink KIND`` names it; the default consumer group ends in it."""

    @property
    def run(self) -> SinkRun:
        """The consumer options all kinds share."""

    def sink(self) -> Sink:
        """A new, unopened destination for these settings."""


def _journal(state: Path | None) -> OffsetJournal:
    if state is None:
        log.warning("no --state file: replays after a crash are sent again")
    return OffsetJournal(state)


@dataclass(frozen=True, slots=True)
class JsonlSettings:
    """``callmap sink jsonl``."""

    kind: ClassVar[str] = "jsonl"
    run: SinkRun
    """The consumer options all kinds share."""
    directory: Path
    """Where the rotated files are written (``--dir``)."""
    max_bytes: int
    """A new file starts before one would grow past this size (``--max-bytes``)."""
    keep: int
    """Files kept, older ones removed; 0 keeps all (``--keep``)."""
    line_format: str = "edge"
    """What each line holds: ``edge`` (the wire edge) or ``ecs`` (``--format``)."""

    def sink(self) -> Sink:
        from sinks.service.destinations.linefile import LINE_FORMATS, LineFileSink

        prefix, render = LINE_FORMATS[self.line_format]
        return LineFileSink(
            self.directory, prefix=prefix, render=render, max_bytes=self.max_bytes, keep=self.keep
        )


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    """``callmap sink sqlite``."""

    kind: ClassVar[str] = "sqlite"
    run: SinkRun
    """The consumer options all kinds share."""
    path: Path
    """The database file, made and migrated if needed (``--path``)."""
    busy_timeout: float
    """Seconds to wait for another writer's lock (``--busy-timeout``)."""

    def sink(self) -> Sink:
        from sinks.service.destinations.sqlite import SqliteSink

        return SqliteSink(self.path, busy_timeout=self.busy_timeout)


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """``callmap sink postgres``."""

    kind: ClassVar[str] = "postgres"
    run: SinkRun
    """The consumer options all kinds share."""
    dsn: str = field(repr=False)
    """``postgresql://...``, from ``--dsn`` or the file ``--dsn-file`` names; it may hold a
    password, so it is never shown."""

    def sink(self) -> Sink:
        from sinks.service.destinations.postgres import PostgresSink

        return PostgresSink(self.dsn)


@dataclass(frozen=True, slots=True)
class SyslogSettings:
    """``callmap sink syslog``."""

    kind: ClassVar[str] = "syslog"
    run: SinkRun
    """The consumer options all kinds share."""
    target: SyslogTarget
    """The receiver: transport, host and port (``--target``)."""
    form: SyslogFormat
    """What every message shares: host name, facility, structured-data id
    (``--hostname``, ``--facility``, ``--sd-id``)."""
    tls: TlsOptions
    """Certificates for ``tls://`` (``--ca-file``, ``--cert-file``, ``--key-file``,
    ``--server-name``)."""
    max_message: int
    """Bytes per message; longer ones are cut (``--max-message``)."""
    state: Path | None
    """The offset journal file; None keeps it in memory only (``--state``)."""

    def sink(self) -> Sink:
        from sinks.service.destinations.syslog import SyslogSink

        journal = _journal(self.state)
        return SyslogSink(
            self.target, self.form, tls=self.tls, journal=journal, max_message=self.max_message
        )


@dataclass(frozen=True, slots=True)
class OcsfSettings:
    """``callmap sink ocsf``: to rotated files or to a Kafka topic, exactly one of them."""

    kind: ClassVar[str] = "ocsf"
    run: SinkRun
    """The consumer options all kinds share."""
    directory: Path | None
    """Where rotated files are written (``--dir``); None when producing to a topic."""
    topic: str | None
    """The SIEM pipeline's topic (``--topic``); None when writing files."""
    max_bytes: int
    """Files: a new one starts before one would grow past this size (``--max-bytes``)."""
    keep: int
    """Files kept, older ones removed; 0 keeps all (``--keep``)."""
    state: Path | None
    """Topic: the offset journal file; None keeps it in memory only (``--state``)."""

    def sink(self) -> Sink:
        from sinks.service.destinations.linefile import OcsfFileSink

        if self.directory is not None:
            return OcsfFileSink(self.directory, max_bytes=self.max_bytes, keep=self.keep)
        from sinks.service.destinations.ocsfkafka import OcsfKafkaSink

        assert self.topic is not None
        return OcsfKafkaSink(self.run.kafka, self.topic, journal=_journal(self.state))
