"""The map as Prometheus series, one set per edge, within a bound (``callmap metrics``). Pure.

Per live edge (expired ones are left out, as in ``callmap list``):

- ``callmap_edge_sightings_total``: how many times capture saw the call (DNS
  answers and socket observations that proved it; not a count of requests);
- ``callmap_edge_first_seen_timestamp_seconds`` and
  ``callmap_edge_last_seen_timestamp_seconds``;
- for an edge with health (from the nodes' connection tracking), counters of
  its ``health_total``: ``callmap_edge_connections_opened_total``,
  ``callmap_edge_connections_closed_total``,
  ``callmap_edge_connects_failed_total``, ``callmap_edge_resets_total``, and
  ``callmap_edge_sent_bytes_total`` and ``callmap_edge_received_bytes_total``
  where the nodes count bytes, and ``callmap_edge_retransmits_total`` where
  the capture agents read ``tcp_info``. They start again from zero when an
  edge comes back after it expired (``rate()`` reads that as a counter reset);
- for an edge whose last window (its ``health``) has round-trip times,
  ``callmap_edge_rtt_seconds{quantile="0.5"}`` and ``{quantile="0.99"}``:
  gauges of that window's p50 and p99, within the 9 % of the RTT buckets;
- ``traces_service_graph_request_total{client, server, connection_type}``:
  the same count under the name Grafana's service graph (Tempo's
  metrics-generator series) draws its nodes and edges from; externals are
  ``virtual_node``, as Tempo marks an uninstrumented peer.

Labels: ``cluster``, ``client`` and ``server`` (``namespace/name``, an
external's DNS name, ``ip:ADDRESS``, ``node:NAME``, ``apiserver``; with
``CLUSTER/`` in front on a map of several clusters), ``client_namespace``,
``server_namespace`` and ``kind`` (the server's type: ``workload``,
``service``, ``external``, ``apiserver``, ``node``, ``ip``).

**The bound.** Every edge is a series in each family, and an edge's labels
are names an attacker in the cluster can choose. At most ``max_series``
series are exported: the most sighted first (ties by labels, so a scrape is
stable); the rest are counted in ``callmap_metrics_series_dropped``. Edges
that the labels cannot tell apart (a workload reached directly and through
a service) are one series, their sightings summed.
``callmap_metrics_edges{cluster, kind}`` counts every live edge (its labels are
bounded by the clusters and six kinds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from callmap.wire import Edge, Endpoint, FlowHealth, total_health
from sinks.endpoints import cluster_of, clusters_in, label
from sinks.lifecycle import live

DEFAULT_MAX_SERIES = 10_000
LABELS = ("cluster", "client", "client_namespace", "server", "server_namespace", "kind")


@dataclass(slots=True)
class EdgeSeries:
    """One series' labels (in :data:`LABELS` order) and the values of its edges (several
    edges share one when they differ only in what the labels leave out, e.g. the service
    a workload was reached through)."""

    labels: tuple[str, str, str, str, str, str]
    sightings: int
    first_seen: float
    last_seen: float
    health: FlowHealth | None = None
    """The edges' ``health_total`` summed; None when none has health."""
    lately: FlowHealth | None = None
    """The edges' ``health`` (their last windows) summed: what the RTT gauges read."""


@dataclass(frozen=True, slots=True)
class ServiceGraph:
    """What one scrape exports."""

    edges: list[EdgeSeries]
    """The exported series, most sighted first."""
    requests: dict[tuple[str, str, str], int]
    """Sightings by (client, server, connection_type), for the exported series."""
    counts: dict[tuple[str, str], int]
    """Live edges by (cluster, kind), all of them."""
    dropped: int
    """Series over the bound, not exported."""


def node_name(edge: Edge, endpoint: Endpoint, several: bool) -> str:
    """An endpoint as a graph node: ``namespace/name`` in its cluster, an external by name."""
    match endpoint.type:
        case "workload" | "service":
            name = f"{endpoint.namespace}/{endpoint.name}"
        case "external":
            return label(endpoint)
        case "ip" | "node":
            name = f"{endpoint.type}:{label(endpoint)}"
        case _:
            name = "apiserver"
    where = cluster_of(edge, endpoint)
    return f"{where}/{name}" if several and where is not None else name


def service_graph(edges: Iterable[Edge], max_series: int = DEFAULT_MAX_SERIES) -> ServiceGraph:
    """The series of the live edges, the most sighted ``max_series`` of them."""
    current = live(edges)
    several = len(clusters_in(current)) > 1
    counts: Counter[tuple[str, str]] = Counter((e.cluster, str(e.server.type)) for e in current)
    merged: dict[tuple[str, ...], EdgeSeries] = {}
    for edge in current:
        client, server = (
            node_name(edge, edge.client, several),
            node_name(edge, edge.server, several),
        )
        labels = (
            edge.cluster,
            client,
            edge.client.namespace or "",
            server,
            edge.server.namespace or "",
            edge.server.type,
        )
        found = merged.get(labels)
        if found is None:
            merged[labels] = EdgeSeries(
                labels, edge.count, edge.first_seen, edge.last_seen, edge.health_total, edge.health
            )
        else:
            found.sightings += edge.count
            found.first_seen = min(found.first_seen, edge.first_seen)
            found.last_seen = max(found.last_seen, edge.last_seen)
            found.health = total_health([found.health, edge.health_total])
            found.lately = total_health([found.lately, edge.health])
    ranked = sorted(merged.values(), key=lambda s: (-s.sightings, s.labels))
    kept = ranked[:max_series]
    requests: Counter[tuple[str, str, str]] = Counter()
    for one in kept:
        kind = "virtual_node" if one.labels[5] == "external" else ""
        requests[(one.labels[1], one.labels[3], kind)] += one.sightings
    return ServiceGraph(kept, dict(requests), dict(counts), len(ranked) - len(kept))
