"""What each map command was asked, as one typed, frozen settings object.

:mod:`sinks.maps.cli` builds these once from the command line and the
environment; the code that runs a command reads only them, so a misspelt
option is a type error rather than a ``KeyError`` at run time. Every command
starts from a :class:`MapQuery` (``--from`` and the filters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from callmap.config import KafkaSettings
from sinks.health import SLOW_MS
from sinks.maps.filters import MapFilter
from sinks.maps.readers import Source

ListFormat = Literal["text", "json"]
ExportFormat = Literal["intents", "networkpolicy", "cilium", "json", "csv"]
Encoding = Literal["yaml", "json"]
Drawing = Literal["svg", "png", "dot"]

LIST_FORMATS: tuple[ListFormat, ...] = ("text", "json")
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("intents", "networkpolicy", "cilium", "json", "csv")
POLICY_FORMATS: tuple[ExportFormat, ...] = ("networkpolicy", "cilium")
"""Formats that select pods by label, and so want pod and service identities."""
DRAWINGS: dict[str, Drawing] = {"svg": "svg", "png": "png", "dot": "dot", "gv": "dot"}
"""``visualize``'s file extensions and what each one is drawn as."""


@dataclass(frozen=True, slots=True)
class MapQuery:
    """What every map command is asked: where the map is, and which edges to keep."""

    source: Source
    """Where the edges are read (``--from``, env ``CALLMAP_MAP_FROM``; ``--global`` for the
    hub's global edges)."""
    selection: MapFilter
    """Which of them count (``--namespace``, ``--client``, ``--server``, ``--cluster``,
    ``--since``, ``--include-expired``)."""
    kafka: KafkaSettings
    """How to reach Kafka when the source is the topic (``CALLMAP_KAFKA_*``)."""


@dataclass(frozen=True, slots=True)
class ListSettings:
    """``callmap list``."""

    query: MapQuery
    """Where the map is and which edges to print."""
    output: ListFormat
    """``text`` (the listing people read) or ``json`` (``--output``)."""
    health: bool = False
    """``--health``: each call's health in the text (the JSON always has it)."""
    slow_ms: float = SLOW_MS
    """A call whose p99 round-trip time is at least this many ms is slow (``--slow-ms``)."""


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """``callmap export``."""

    query: MapQuery
    """Where the map is and which edges (or, for policies, which workloads) to export."""
    format: ExportFormat
    """What to write (``--format``)."""
    output: Path | None
    """A file, a directory for one file per object, or None for stdout (``-o``)."""
    per_object: bool
    """Kubernetes objects: one file each in the directory ``output`` (``-o`` an existing
    directory, or a path ending in ``/``)."""
    encoding: Encoding
    """Kubernetes objects as ``yaml`` or ``json`` (``--json``)."""
    egress: bool
    """NetworkPolicies: also one egress policy per client (``--egress``)."""
    labels: Path | None
    """A file of pod labels per ``namespace/workload`` (``--labels``)."""
    label_key: str
    """The label a workload's pods carry its name in, when nothing better is known
    (``--label-key``)."""
    identities: bool
    """Read pod and service identities for the policy formats (``--identities``)."""
    dns_namespace: str
    """Namespace of the cluster DNS pods that egress rules keep open (``--dns-namespace``)."""
    dns_labels: Mapping[str, str]
    """Labels of the cluster DNS pods (``--dns-label KEY=VALUE``, repeated)."""
    clusterset_domain: str = "clusterset.local"
    """Intents: the MCS domain naming a service of another cluster (``--clusterset-domain``)."""
    slow_ms: float = SLOW_MS
    """CSV: a call whose p99 round-trip time is at least this many ms is ``slow``
    (``--slow-ms``)."""

    @property
    def wants_identities(self) -> bool:
        """Whether the export reads pod and service identities along with the edges."""
        return self.identities and self.format in POLICY_FORMATS


@dataclass(frozen=True, slots=True)
class VisualizeSettings:
    """``callmap visualize``."""

    query: MapQuery
    """Where the map is and which edges to draw."""
    output: Path
    """The file to write (``-o``)."""
    drawing: Drawing
    """What to write, from the file's extension: ``svg``, ``png`` or ``dot``."""
    title: str
    """The graph's title (``--title``)."""
    slow_ms: float = SLOW_MS
    """A call whose p99 round-trip time is at least this many ms is drawn slow
    (``--slow-ms``)."""


@dataclass(frozen=True, slots=True)
class McpSettings:
    """``callmap mcp``."""

    query: MapQuery
    """Where the map is and which edges count (the map commands' shared options)."""
    transport: str
    """``stdio`` (default) or ``http`` (streamable HTTP) (``--transport``)."""
    host: str
    """HTTP: the address to listen on (``--host``, loopback by default)."""
    port: int
    """HTTP: the port (``--port``)."""
    refresh: float
    """Seconds a map read stays in use before the next question reads it again."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """``callmap serve``."""

    query: MapQuery
    """Where the map is and which edges the page shows (the map commands' shared options;
    expired edges are always sent: the page shows what changed)."""
    host: str
    """The address to listen on (``--host``, loopback by default)."""
    port: int
    """The port (``--port``)."""
    token: str | None
    """When set, every ``/api/`` request must carry it (``--token-file``, env
    ``CALLMAP_SERVE_TOKEN``)."""
    refresh: float
    """Seconds between reads of a sink's store, and of the identities (``--refresh``)."""
    slow_ms: float = SLOW_MS
    """A call whose p99 round-trip time is at least this many ms is marked slow
    (``--slow-ms``)."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``callmap metrics``."""

    kafka: KafkaSettings
    """How to reach Kafka (``CALLMAP_KAFKA_*``)."""
    port: int
    """The port of ``/metrics`` and ``/healthz`` (``--metrics-port``)."""
    address: str | None
    """The address to listen on (``--address``, env ``CALLMAP_METRICS_ADDRESS``)."""
    max_series: int
    """At most this many edge series per family (``--max-series``)."""
    clusters: frozenset[str] = frozenset()
    """Only edges with a side in one of these clusters (``--cluster``)."""
    global_edges: bool = False
    """Follow the hub's global edges instead of a cluster's (``--global``)."""
