"""The edges themselves as JSON or CSV (``callmap export --format json|csv``).

JSON is a list of wire-format edges (see docs/wire-contract.md), in the
canonical order. CSV has one row per edge with flat columns; the csv module
quotes separators, quotes and line breaks, and :func:`sinks.escape.csv_cell`
keeps spreadsheets from running a hostile name as a formula. Times in CSV are
ISO 8601 UTC. When the edges span several clusters, CSV has two more columns
at the end, ``client_cluster`` and ``server_cluster`` (empty for an
external); JSON edges carry what their records carry. Pure.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import msgspec

from callmap.wire import Edge, Endpoint
from sinks.endpoints import cluster_of, clusters_in, edge_sort_key, port_labels
from sinks.escape import csv_cell
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


def edges_json(edges: Iterable[Edge]) -> bytes:
    """A JSON array of edges, one per line, in canonical order."""
    encoder = msgspec.json.Encoder()
    lines = [encoder.encode(edge) for edge in sorted(edges, key=edge_sort_key)]
    if not lines:
        return b"[]\n"
    return b"[\n" + b",\n".join(lines) + b"\n]\n"


def _endpoint_cells(endpoint: Endpoint) -> list[str]:
    return [csv_cell(getattr(endpoint, field) or "") for field in ENDPOINT_FIELDS]


def edges_csv(edges: Iterable[Edge]) -> str:
    """The edges as CSV with a header row (RFC 4180: CRLF line ends, quoted as needed)."""
    edges = sorted(edges, key=edge_sort_key)
    several = len(clusters_in(edges)) > 1
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS + CLUSTER_COLUMNS if several else CSV_COLUMNS)
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
            ]
        )
    return out.getvalue()
