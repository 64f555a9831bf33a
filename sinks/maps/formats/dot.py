"""The map as a Graphviz DOT graph (``callmap visualize``).

Namespaces are clusters; externals, unresolved IPs and the control plane sit
in clusters of their own, drawn differently. Every edge carries a tooltip with
its ports, sources and last sighting (an SVG shows it on hover). Node ids are
generated (``n0``, ``n1``, ...), and every label and tooltip goes through
:func:`sinks.escape.dot_string`, so no name can add a statement. Writing DOT
needs nothing installed; :mod:`sinks.maps.graphviz` turns it into SVG or PNG. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from callmap.wire import Edge, Endpoint
from sinks.endpoints import client_key, edge_sort_key, identity, label, qualified
from sinks.escape import dot_string
from sinks.maps.formats.tabular import iso

_GROUPS = {
    "external": ("external", "outside the cluster", 'style="dashed,rounded"; color="#c0834a";'),
    "ip": ("ip", "unresolved IPs", 'style="dotted"; color="#999999";'),
    "node": ("infra", "control plane and nodes", 'style="rounded"; color="#7a7a7a";'),
    "apiserver": ("infra", "control plane and nodes", 'style="rounded"; color="#7a7a7a";'),
}
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


def _group(cluster: str, endpoint: Endpoint, several: bool) -> tuple[str, str, str]:
    """(group key, caption, style) of the cluster an endpoint is drawn in."""
    prefix = f"cluster {cluster} / " if several else ""
    if endpoint.type in _GROUPS:
        key, caption, style = _GROUPS[endpoint.type]
        return (f"{cluster}\0~{key}", prefix + caption, style)
    caption = f"{prefix}namespace {endpoint.namespace}"
    return (f"{cluster}\0{endpoint.namespace}", caption, 'style="rounded"; color="#8aa4c8";')


def render_dot(edges: Iterable[Edge], title: str = "callmap") -> str:
    """A DOT digraph of ``edges`` (already filtered), deterministic for the same input."""
    edges = sorted(edges, key=edge_sort_key)
    several = len({edge.cluster for edge in edges}) > 1
    nodes: dict[tuple[str, Endpoint], str] = {}
    for key in sorted(
        {(e.cluster, identity(ep)) for e in edges for ep in (e.client, e.server)},
        key=lambda item: (item[0], client_key(item[1])),
    ):
        nodes[key] = f"n{len(nodes)}"
    groups: dict[str, tuple[str, str, list[str]]] = {}
    for (cluster, endpoint), node_id in nodes.items():
        group, caption, style = _group(cluster, endpoint, several)
        tooltip = _lines(qualified(endpoint), f"cluster {cluster}")
        statement = (
            f"{node_id} [label={dot_string(label(endpoint))}, tooltip={tooltip}, "
            f"{_NODE_STYLE.get(endpoint.type, 'shape=box')}];"
        )
        groups.setdefault(group, (caption, style, []))[2].append(statement)
    out = [
        f"digraph {dot_string(title)} {{",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=t, '
        f'label={dot_string(title)}, charset="UTF-8"];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4a5a70"];',
    ]
    for index, group in enumerate(sorted(groups)):
        caption, style, statements = groups[group]
        out.append(f"  subgraph cluster_{index} {{")
        out.append(f"    label={dot_string(caption)}; {style}")
        out.extend(f"    {statement}" for statement in statements)
        out.append("  }")
    for edge in edges:
        source = nodes[(edge.cluster, identity(edge.client))]
        target = nodes[(edge.cluster, identity(edge.server))]
        ports = ", ".join(str(port) for port in edge.ports) or "none seen"
        details = [
            f"{label(edge.client)} -> {label(edge.server)}",
            f"ports: {ports}",
            f"last seen: {iso(edge.last_seen)}",
            f"first seen: {iso(edge.first_seen)}",
            f"sources: {', '.join(edge.sources) or 'none'}; sightings: {edge.count}",
        ]
        if edge.server.service:
            details.insert(1, f"via service {edge.server.service}")
        if edge.event == "expired":
            details.append("expired")
        attributes = [f"tooltip={_lines(*details)}"]
        if edge.ports:
            attributes.append(f"label={dot_string(', '.join(str(p) for p in edge.ports))}")
        if edge.event == "expired":
            attributes.append('style=dashed, color="#aaaaaa"')
        out.append(f"  {source} -> {target} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"
