"""The map as a Graphviz DOT graph (``callmap visualize``).

Namespaces are clusters; externals, unresolved IPs and the control plane sit
in clusters of their own, drawn differently. When the map spans several
Kubernetes clusters, each is a box of its own (``subgraph cluster_...``)
holding its namespaces, IPs and control plane, and externals sit outside them
all. Every edge carries a tooltip with its ports, sources, last sighting and
health (an SVG shows it on hover); an edge failing lately
(:func:`sinks.health.failing`) is drawn red with its failures under its
ports, one slow lately (:func:`sinks.health.slow`: its p99 round-trip time at
or above the threshold) orange with its p99 under them. Failing wins: a call
both failing and slow is red, its p99 under its failures. Node ids are
generated (``n0``, ``n1``, ...), and every label and tooltip goes through
:func:`sinks.escape.dot_string`, so no name can add a statement. Writing DOT
needs nothing installed; :mod:`sinks.maps.graphviz` turns it into SVG or PNG. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from callmap.wire import Edge, Endpoint, FlowHealth
from sinks.endpoints import (
    client_key,
    cluster_of,
    clusters_in,
    edge_sort_key,
    label,
    port_labels,
    qualified,
    shown,
)
from sinks.escape import dot_string
from sinks.health import SLOW_MS, failing, milliseconds, rtt_of, slow
from sinks.health import describe as describe_health
from sinks.times import iso_time

_GROUPS = {
    "external": ("external", "outside the cluster", 'style="dashed,rounded"; color="#c0834a";'),
    "ip": ("ip", "unresolved IPs", 'style="dotted"; color="#999999";'),
    "node": ("infra", "control plane and nodes", 'style="rounded"; color="#7a7a7a";'),
    "apiserver": ("infra", "control plane and nodes", 'style="rounded"; color="#7a7a7a";'),
}
_FAILING = "#c62828"
"""The colour of a failing edge (connects failed, or connections reset lately)."""
_SLOW = "#e65100"
"""The colour of a slow edge (its p99 round-trip time at or above the threshold lately):
orange, apart from the red of failing and from the blue-grey of the rest."""
_CLUSTER_STYLE = 'style="bold,rounded"; color="#2f4f7f"; fontsize=13;'
_NODE_STYLE = {
    "workload": 'shape=box, style="rounded,filled", fillcolor="#e8f0fb"',
    "service": 'shape=box, style="rounded,filled,dashed", fillcolor="#f4f4f4"',
    "external": 'shape=ellipse, style="filled", fillcolor="#fdf0e1"',
    "ip": 'shape=plain, fontcolor="#666666"',
    "node": 'shape=component, style="filled", fillcolor="#eeeeee"',
    "apiserver": 'shape=hexagon, style="filled", fillcolor="#eeeeee"',
}


def _lines(*lines: str) -> str:
    """One DOT string of several escaped lines (``\\n`` between them)."""
    return '"' + "\\n".join(dot_string(line)[1:-1] for line in lines) + '"'


def _failures(health: FlowHealth) -> str:
    """A failing edge's label line: ``3 failed, 1 reset (12 opened)``."""
    failures = describe_health(FlowHealth(failed=health.failed, resets=health.resets))
    return f"{failures} ({health.opened} opened)" if health.opened else failures


def _p99(health: FlowHealth) -> str:
    """A slow edge's label line: ``p99 240 ms``."""
    rtt = rtt_of(health)
    return f"p99 {milliseconds(rtt.quantile_us(0.99))}" if rtt is not None else ""


def _group(endpoint: Endpoint) -> tuple[str, str, str]:
    """(group key, caption, style) of the box an endpoint is drawn in, within its cluster."""
    if endpoint.type in _GROUPS:
        key, caption, style = _GROUPS[endpoint.type]
        return (f"~{key}", caption, style)
    caption = f"namespace {endpoint.namespace}"
    return (endpoint.namespace or "", caption, 'style="rounded"; color="#8aa4c8";')


Box = tuple[str, str, list[str]]
"""(caption, style, node statements) of one box."""


def _boxes(
    nodes: dict[Endpoint, str], several: bool, only: str
) -> dict[str | None, dict[str, Box]]:
    """Node statements by cluster (None: outside every cluster), then by box."""
    clusters: dict[str | None, dict[str, Box]] = {}
    for endpoint, node_id in nodes.items():
        cluster = endpoint.cluster if several else only
        group, caption, style = _group(endpoint)
        if several and cluster is None:
            caption = "outside the clusters"
        where = f"cluster {cluster}" if cluster is not None else "in no cluster"
        tooltip = _lines(qualified(endpoint), where)
        statement = (
            f"{node_id} [label={dot_string(label(endpoint))}, tooltip={tooltip}, "
            f"{_NODE_STYLE.get(endpoint.type, 'shape=box')}];"
        )
        boxes = clusters.setdefault(cluster if several else None, {})
        boxes.setdefault(group, (caption, style, []))[2].append(statement)
    return clusters


def render_dot(edges: Iterable[Edge], title: str = "callmap", *, slow_ms: float = SLOW_MS) -> str:
    """A DOT digraph of ``edges`` (already filtered), deterministic for the same input;
    calls whose p99 round-trip time is ``slow_ms`` or more lately are drawn slow."""
    edges = sorted(edges, key=edge_sort_key)
    several = len(clusters_in(edges)) > 1
    only = edges[0].cluster if edges else ""
    nodes: dict[Endpoint, str] = {}
    for endpoint in sorted(
        {shown(e, ep, several) for e in edges for ep in (e.client, e.server)},
        key=lambda ep: (ep.cluster or "", client_key(ep)),
    ):
        nodes[endpoint] = f"n{len(nodes)}"
    out = [
        f"digraph {dot_string(title)} {{",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=t, '
        f'label={dot_string(title)}, charset="UTF-8"];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4a5a70"];',
    ]
    index = 0
    clusters = _boxes(nodes, several, only)
    for cluster in sorted(clusters, key=lambda name: (name is None, name or "")):
        indent = "  "
        if cluster is not None:
            out.append(f"  subgraph cluster_{index} {{")
            out.append(f"    label={dot_string(f'cluster {cluster}')}; {_CLUSTER_STYLE}")
            index += 1
            indent = "    "
        boxes = clusters[cluster]
        for group in sorted(boxes):
            caption, style, statements = boxes[group]
            out.append(f"{indent}subgraph cluster_{index} {{")
            out.append(f"{indent}  label={dot_string(caption)}; {style}")
            out.extend(f"{indent}  {statement}" for statement in statements)
            out.append(f"{indent}}}")
            index += 1
        if cluster is not None:
            out.append("  }")
    for edge in edges:
        source = nodes[shown(edge, edge.client, several)]
        target = nodes[shown(edge, edge.server, several)]
        ports = ", ".join(port_labels(edge)) or "none seen"
        details = [
            f"{label(edge.client)} -> {label(edge.server)}",
            f"ports: {ports}",
            f"last seen: {iso_time(edge.last_seen)}",
            f"first seen: {iso_time(edge.first_seen)}",
            f"sources: {', '.join(edge.sources) or 'none'}; sightings: {edge.count}",
        ]
        if edge.server.service:
            details.insert(1, f"via service {edge.server.service}")
        if several:
            sides = [cluster_of(edge, side) or "no cluster" for side in (edge.client, edge.server)]
            details.insert(1, f"cluster {sides[0]} -> {sides[1]}")
        if edge.health is not None:
            details.append(f"lately: {describe_health(edge.health)}")
        if edge.event == "expired":
            details.append("expired")
        attributes = [f"tooltip={_lines(*details)}"]
        shown_label = [", ".join(port_labels(edge))] if edge.ports or edge.udp_ports else []
        colour: str | None = None
        if edge.health is not None and failing(edge.health):
            shown_label.append(_failures(edge.health))
            colour = _FAILING
        if edge.health is not None and slow(edge.health, slow_ms):
            shown_label.append(_p99(edge.health))
            colour = colour or _SLOW
        if colour is not None:
            attributes.append(f'color="{colour}", fontcolor="{colour}", penwidth=2')
        if shown_label:
            attributes.append(f"label={_lines(*shown_label)}")
        if edge.event == "expired":  # dashed; red or orange still when its last calls were
            attributes.append("style=dashed" if colour else 'style=dashed, color="#aaaaaa"')
        out.append(f"  {source} -> {target} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"
