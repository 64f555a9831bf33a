"""The edges themselves as JSON or CSV (``callmap export --format json|csv``).

JSON is a list of wire-format edges (see docs/wire-contract.md), in the
canonical order. CSV has one row per edge with flat columns; the csv module
quotes separators, quotes and line breaks, and :func:`sinks.escape.csv_cell`
keeps spreadsheets from running a hostile name as a formula. Times in CSV are
ISO 8601 UTC. When the edges span several clusters, CSV has two more columns
at the end, ``client_cluster`` and ``server_cluster`` (empty for an
external); JSON edges carry what their records carry.

How each call went lately (the edge's ``health``, since its previous
announcement, as ``callmap list --health`` tells it) follows in
:data:`HEALTH_COLUMNS`, last in every row: after ``self_edge``, or after the
cluster columns when there are those. So every column a reader knew keeps its
position, the cluster columns included; a reader of the health columns finds
them by their header. They are the names of
:func:`sinks.health.health_summary`, with the numbers of
:func:`sinks.health.rtt_fields`: counts and bytes as plain integers, round-trip
times in milliseconds with three decimals (``rtt_*_ms``), ``failing`` and
``slow`` as ``true`` or ``false`` by the rules of :mod:`sinks.health` (``slow``
by ``slow_ms``). A cell is empty when it is unknown: every health cell of an
edge without health, ``bytes_*`` where the node's conntrack counts no bytes,
``retransmits`` and ``rtt_*`` without ``tcp_info``. Pure.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import msgspec

from callmap.wire import Edge, Endpoint, FlowHealth
from sinks.endpoints import cluster_of, clusters_in, edge_sort_key, port_labels
from sinks.escape import csv_cell
from sinks.health import SLOW_MS, failing, rtt_fields, rtt_of, slow
from sinks.times import iso_time

ENDPOINT_FIELDS = ("type", "namespace", "name", "kind", "service", "dns_name", "ip")
CSV_COLUMNS = (
    "edge_id",
    "cluster",
    "event",
    *(f"client_{field}" for field in ENDPOINT_FIELDS),
    *(f"server_{field}" for field in ENDPOINT_FIELDS),
    "ports",
    "sources",
    "first_seen",
    "last_seen",
    "count",
    "self_edge",
)
CLUSTER_COLUMNS = ("client_cluster", "server_cluster")
"""Added at the end when the edges span several clusters."""
HEALTH_COLUMNS = (
    "opened",
    "closed",
    "failed",
    "resets",
    "bytes_sent",
    "bytes_received",
    "retransmits",
    "rtt_samples",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "rtt_mean_ms",
    "failing",
    "slow",
)
"""How the call went lately: last in every row, after the cluster columns if any."""


def edges_json(edges: Iterable[Edge]) -> bytes:
    """A JSON array of edges, one per line, in canonical order."""
    encoder = msgspec.json.Encoder()
    lines = [encoder.encode(edge) for edge in sorted(edges, key=edge_sort_key)]
    if not lines:
        return b"[]\n"
    return b"[\n" + b",\n".join(lines) + b"\n]\n"


def _endpoint_cells(endpoint: Endpoint) -> list[str]:
    return [csv_cell(getattr(endpoint, field) or "") for field in ENDPOINT_FIELDS]


def _number(value: bool | int | float | None) -> str:
    """A health cell: empty when unknown, ``true``/``false``, an integer as it is, a
    float (a time in ms) with three decimals and never in exponent form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def health_cells(health: FlowHealth | None, slow_ms: float = SLOW_MS) -> list[str]:
    """The :data:`HEALTH_COLUMNS` cells of an edge's ``health``; all empty without it.

    Every cell is a number or ``true``/``false`` made here from the record's typed
    fields, never its text, so no name reaches these cells."""
    if health is None:
        return [""] * len(HEALTH_COLUMNS)
    tcp = rtt_fields(health)
    rtt = rtt_of(health)
    values: dict[str, bool | int | float | None] = {
        "opened": health.opened,
        "closed": health.closed,
        "failed": health.failed,
        "resets": health.resets,
        "bytes_sent": health.bytes_sent,
        "bytes_received": health.bytes_received,
        "retransmits": tcp.get("retransmits"),
        "rtt_samples": None if rtt is None else rtt.samples,
        "rtt_p50_ms": tcp.get("rtt_p50_ms"),
        "rtt_p99_ms": tcp.get("rtt_p99_ms"),
        "rtt_mean_ms": tcp.get("rtt_mean_ms"),
        "failing": failing(health),
        "slow": slow(health, slow_ms),
    }
    return [_number(values[column]) for column in HEALTH_COLUMNS]


def edges_csv(edges: Iterable[Edge], *, slow_ms: float = SLOW_MS) -> str:
    """The edges as CSV with a header row (RFC 4180: CRLF line ends, quoted as needed);
    ``slow_ms`` is the slow rule's threshold for the ``slow`` column."""
    edges = sorted(edges, key=edge_sort_key)
    several = len(clusters_in(edges)) > 1
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((CSV_COLUMNS + CLUSTER_COLUMNS if several else CSV_COLUMNS) + HEALTH_COLUMNS)
    for edge in edges:
        clusters = [csv_cell(cluster_of(edge, side) or "") for side in (edge.client, edge.server)]
        writer.writerow(
            [
                csv_cell(edge.edge_id),
                csv_cell(edge.cluster),
                edge.event,
                *_endpoint_cells(edge.client),
                *_endpoint_cells(edge.server),
                " ".join(port_labels(edge)),
                " ".join(edge.sources),
                iso_time(edge.first_seen),
                iso_time(edge.last_seen),
                str(edge.count),
                "true" if edge.self_edge else "false",
                *(clusters if several else []),
                *health_cells(edge.health, slow_ms),
            ]
        )
    return out.getvalue()
