"""The map as the web page of ``callmap serve`` reads it: JSON edges and nodes,
the changes between two maps, and server-sent event frames. Pure.

Each edge carries both of its nodes whole, so one ``change`` event is all the
page needs to draw a new call. A node's ``id`` is its :func:`qualified`
identity in its cluster (``lab:shop/Deployment/cart``; externals belong to no
cluster: ``external:api.example.org``), the same for every edge it is on; its
``label`` is the short name a drawing shows. Labels of a workload's pods come
from the identities when they are known (:class:`LabelBook`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callmap.wire import Edge, Endpoint
from sinks.endpoints import label, placed, qualified
from sinks.health import SLOW_MS, describe, health_fields
from sinks.maps.formats.labels import LabelBook

Json = dict[str, Any]

KINDS = {
    "workload": "pod-to-pod",
    "service": "service",
    "external": "external",
    "apiserver": "apiserver",
    "node": "node",
    "ip": "ip",
}
"""An edge's kind, by its server's type: what the page filters on."""


def node_id(endpoint: Endpoint) -> str:
    """The node's identity on the page: ``CLUSTER:qualified``, or ``qualified`` when it
    belongs to no cluster (externals)."""
    name = qualified(endpoint)
    return f"{endpoint.cluster}:{name}" if endpoint.cluster is not None else name


def node_json(edge: Edge, endpoint: Endpoint, labels: LabelBook | None = None) -> Json:
    """One side of ``edge`` as a node of the page."""
    node = placed(edge, endpoint)
    known = labels.known(node) if labels is not None and node.type == "workload" else None
    return {
        "id": node_id(node),
        "label": label(node),
        "type": node.type,
        "namespace": node.namespace,
        "cluster": node.cluster,
        "kind": node.kind if node.type == "workload" else None,
        "labels": dict(sorted((known or {}).items())),
    }


def edge_json(edge: Edge, labels: LabelBook | None = None, slow_ms: float = SLOW_MS) -> Json:
    """One edge as the page draws and lists it (``slow`` by ``slow_ms``)."""
    return {
        "id": edge.edge_id,
        "cluster": edge.cluster,
        "event": edge.event,
        "kind": KINDS.get(edge.server.type, edge.server.type),
        "client": node_json(edge, edge.client, labels),
        "server": node_json(edge, edge.server, labels),
        "ports": list(edge.ports),
        "udp_ports": list(edge.udp_ports),
        "sources": list(edge.sources),
        "first_seen": edge.first_seen,
        "last_seen": edge.last_seen,
        "count": edge.count,
        **_health(edge, slow_ms),
    }


def _health(edge: Edge, slow_ms: float) -> Json:
    """For an edge with health: :func:`sinks.health.health_fields` and ``health_text``,
    the words ``callmap list --health`` uses."""
    fields = health_fields(edge, slow_ms)
    return {**fields, "health_text": describe(edge.health)} if fields else {}


def snapshot(
    edges: Iterable[Edge],
    now: float,
    source: str,
    labels: LabelBook | None = None,
    slow_ms: float = SLOW_MS,
) -> Json:
    """The whole map, expired edges included: the first event of every stream."""
    edges = list(edges)
    return {
        "edges": [edge_json(edge, labels, slow_ms) for edge in edges],
        "now": now,
        "source": source,
        "clusters": sorted({edge.cluster for edge in edges}),
    }


@dataclass(frozen=True, slots=True)
class MapChange:
    """One edge added or updated (``edge``), or gone for good (``edge`` is None)."""

    edge_id: str
    edge: Edge | None


def changes_between(before: Mapping[str, Edge], after: Mapping[str, Edge]) -> list[MapChange]:
    """What turns the map ``before`` into ``after`` (both by ``edge_id``), in id order."""
    found = [
        MapChange(edge_id, edge) for edge_id, edge in after.items() if before.get(edge_id) != edge
    ]
    found += [MapChange(edge_id, None) for edge_id in before if edge_id not in after]
    return sorted(found, key=lambda change: change.edge_id)


def change_json(
    change: MapChange, labels: LabelBook | None = None, slow_ms: float = SLOW_MS
) -> Json:
    """A ``change`` event's data: ``{"edge": ...}`` or ``{"removed": id}``."""
    if change.edge is None:
        return {"removed": change.edge_id}
    return {"edge": edge_json(change.edge, labels, slow_ms)}


def event_frame(name: str, data: Json) -> bytes:
    """One server-sent event. JSON keeps every newline escaped, so the data is one
    ``data:`` line whatever the names in it hold."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {body}\n\n".encode()
