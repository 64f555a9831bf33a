"""Questions about the map, answered as plain data (``callmap mcp``'s tools). Pure.

A workload is named as the map filters name it (``cart`` or ``shop/cart``,
a service name, an external's DNS name or an IP: :func:`sinks.endpoints.names`),
and only live edges count (not expired), as in ``callmap list``. Each answer
is JSON-ready: endpoints as ``qualified`` strings (``shop/Deployment/cart``,
``external:api.example.org``), times in ISO 8601.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from callmap.wire import Edge, Endpoint, PodIdentity, ServiceIdentity
from sinks.endpoints import names, placed, qualified, sort_key
from sinks.lifecycle import live
from sinks.maps.filters import MapFilter
from sinks.maps.formats.cilium import CiliumOptions, cilium_policies
from sinks.maps.formats.documents import to_yaml
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import PortMap
from sinks.times import iso_time

Answer = dict[str, Any]


def _name(endpoint: Endpoint) -> str:
    """``qualified`` name, prefixed ``CLUSTER:`` where the endpoint names its cluster
    (the global edges of an aggregator)."""
    name = qualified(endpoint)
    return f"{endpoint.cluster}:{name}" if endpoint.cluster is not None else name


def call(edge: Edge) -> Answer:
    """One edge as an answer's row: ``ports`` its TCP ports as numbers, then its UDP
    ports as ``53/udp``, the way every text output writes them."""
    return {
        "client": _name(edge.client),
        "server": _name(edge.server),
        "ports": [*edge.ports, *(f"{port}/udp" for port in edge.udp_ports)],
        "sources": list(edge.sources),
        "first_seen": iso_time(edge.first_seen, "seconds"),
        "last_seen": iso_time(edge.last_seen, "seconds"),
        "count": edge.count,
        "cluster": edge.cluster,
    }


def _sorted(edges: Iterable[Edge]) -> list[Edge]:
    return sorted(edges, key=lambda e: (sort_key(e.client), sort_key(e.server)))


def callers(edges: Sequence[Edge], workload: str) -> list[Answer]:
    """Who calls ``workload``."""
    return [call(e) for e in _sorted(live(edges)) if workload in names(e.server)]


def callees(edges: Sequence[Edge], workload: str) -> list[Answer]:
    """What ``workload`` calls."""
    return [call(e) for e in _sorted(live(edges)) if workload in names(e.client)]


def new_since(edges: Sequence[Edge], since: float) -> list[Answer]:
    """Edges first seen at or after ``since``, oldest first."""
    fresh = [e for e in live(edges) if e.first_seen >= since]
    return [call(e) for e in sorted(fresh, key=lambda e: (e.first_seen, e.edge_id))]


def path(edges: Sequence[Edge], start: str, goal: str, max_hops: int = 10) -> list[Answer] | None:
    """The shortest chain of calls from ``start`` to ``goal`` (one edge per hop), or None.

    Ties go to the first call in listing order, so the answer is stable.
    """
    outgoing: dict[Endpoint, list[Edge]] = {}
    for edge in _sorted(live(edges)):
        outgoing.setdefault(placed(edge, edge.client), []).append(edge)
    starts = [node for node in outgoing if start in names(node)]
    came_by: dict[Endpoint, Edge | None] = dict.fromkeys(starts)
    frontier = deque((node, 1) for node in starts)
    while frontier:
        node, hops = frontier.popleft()
        for edge in outgoing.get(node, []):
            if goal in names(edge.server):
                return [*_chain(node, came_by), call(edge)]
            server = placed(edge, edge.server)
            if server not in came_by and hops < max_hops:
                came_by[server] = edge
                frontier.append((server, hops + 1))
    return None


def _chain(node: Endpoint, came_by: dict[Endpoint, Edge | None]) -> list[Answer]:
    """The calls that led from a start to ``node``."""
    hops: list[Answer] = []
    edge = came_by[node]
    while edge is not None:
        hops.append(call(edge))
        edge = came_by[placed(edge, edge.client)]
    return hops[::-1]


POLICY_KINDS = ("networkpolicy", "cilium", "intents")
"""What :func:`policy` writes: an ingress NetworkPolicy or CiliumNetworkPolicy of a
server, or the ClientIntents of a client."""


def policy(
    edges: Sequence[Edge],
    workload: str,
    kind: str,
    pods: Sequence[PodIdentity] = (),
    services: Sequence[ServiceIdentity] = (),
) -> tuple[str, list[str]]:
    """What ``callmap export`` writes for one workload, as YAML, and its warnings."""
    current = live(edges)
    if kind == "intents":
        export = client_intents(current, MapFilter(clients=frozenset({workload})))
    elif kind in ("networkpolicy", "cilium"):
        book = LabelBook.from_pods(pods) if pods else LabelBook()
        selection, ports = MapFilter(servers=frozenset({workload})), PortMap(services)
        if kind == "networkpolicy":
            export = network_policies(current, book, selection, NetpolOptions(), ports)
        else:
            export = cilium_policies(current, book, selection, CiliumOptions(), ports)
    else:
        raise ValueError(f"policy kind {kind!r}: expected one of {', '.join(POLICY_KINDS)}")
    return to_yaml(export.documents), list(dict.fromkeys(export.warnings))
