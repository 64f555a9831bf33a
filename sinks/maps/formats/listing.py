"""``callmap list``: the map as the text people know, or the same as JSON.

::

    checkoutservice in namespace shop calls:
      - cartservice
      - ledger in namespace finance
      - api.stripe.com (external)

Clients are sorted by namespace and name; under each, servers in the client's
namespace come first, then other namespaces, then the API server, nodes,
externals and unresolved IPs. Expired edges (shown only when asked) are
marked. When the edges shown span several clusters, clients come cluster by
cluster and every name but an external's carries its cluster::

    frontend in namespace shop (cluster east) calls:
      - cartservice (cluster east)
      - api in namespace shop (cluster west)

Every name passes through :func:`sinks.escape.terminal`, so a hostile name
cannot start a new line or move the cursor. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from callmap.wire import Edge, Endpoint, FlowHealth, total_health
from sinks.endpoints import (
    client_key,
    clusters_in,
    describe,
    edge_sort_key,
    heading,
    identity,
    in_cluster,
    shown,
    sort_key,
)
from sinks.escape import terminal
from sinks.health import SLOW_MS, failing, health_fields, slow
from sinks.health import describe as describe_health

Groups = list[tuple[tuple[str, Endpoint], list[Edge]]]


def _by_client(edges: Iterable[Edge]) -> tuple[Groups, bool]:
    """Edges by (cluster, client as shown), and whether they span several clusters."""
    edges = sorted(edges, key=edge_sort_key)
    several = len(clusters_in(edges)) > 1
    groups: dict[tuple[str, Endpoint], list[Edge]] = {}
    for edge in edges:
        groups.setdefault((edge.cluster, shown(edge, edge.client, several)), []).append(edge)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], client_key(item[0][1])))
    return ordered, several


def _calls(client: Endpoint, calls: list[Edge], several: bool) -> list[tuple[Edge, Endpoint]]:
    """A client's edges with their servers as shown, in listing order."""
    servers = [(edge, shown(edge, edge.server, several)) for edge in calls]
    return sorted(servers, key=lambda item: sort_key(item[1], client.namespace, client.cluster))


def render_text(edges: Iterable[Edge], *, health: bool = False, slow_ms: float = SLOW_MS) -> str:
    """The map as text; clusters are named only when there are several.

    With ``health``, a server line whose edges have health ends with how its
    calls went lately (their ``health``, summed over the edges shown as that
    line), a failing one marked ``[failing]`` and one whose p99 round-trip time
    is ``slow_ms`` or more ``[slow]`` (both, when both); a line without health
    stays as it is.
    """
    groups, several = _by_client(edges)
    lines: list[str] = []
    for (_, client), calls in groups:
        lines.append(f"{terminal(heading(client))} calls:")
        shown_lines: dict[str, list[FlowHealth | None]] = {}
        for edge, server in _calls(client, calls, several):
            line = describe(server, client.namespace, client.cluster)
            if edge.event == "expired":
                line += " [expired]"
            shown_lines.setdefault(line, []).append(edge.health)
        for line, healths in shown_lines.items():
            lately = total_health(healths) if health else None
            if lately is not None:
                marks = " [failing]" if failing(lately) else ""
                marks += " [slow]" if slow(lately, slow_ms) else ""
                line += f"{marks}: {describe_health(lately)}"
            lines.append(f"  - {terminal(line)}")
    return "".join(line + "\n" for line in lines)


def _udp_ports(edge: Edge) -> dict[str, list[int]]:
    """``udp_ports``, for a call that has any: ``ports`` stays the TCP ports, and a
    TCP-only call is written as it always was."""
    return {"udp_ports": list(edge.udp_ports)} if edge.udp_ports else {}


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.to_builtins(endpoint)
    return value


def render_json(edges: Iterable[Edge], *, slow_ms: float = SLOW_MS) -> str:
    """The same map as JSON: a list of clients, each with its calls in listing order.

    With several clusters, every endpoint carries its ``cluster`` (externals none).
    A call with health carries :func:`sinks.health.health_fields` (``slow`` by
    ``slow_ms``).
    """
    document = []
    groups, several = _by_client(edges)
    for (cluster, client), calls in groups:
        document.append(
            {
                "cluster": cluster,
                "client": _endpoint(client if several else identity(calls[0].client)),
                "display": heading(client),
                "calls": [
                    {
                        "server": _endpoint(
                            in_cluster(edge, edge.server) if several else edge.server
                        ),
                        "display": describe(server, client.namespace, client.cluster),
                        "edge_id": edge.edge_id,
                        "event": edge.event,
                        "ports": list(edge.ports),
                        **_udp_ports(edge),
                        **health_fields(edge, slow_ms),
                        "sources": list(edge.sources),
                        "first_seen": edge.first_seen,
                        "last_seen": edge.last_seen,
                        "count": edge.count,
                    }
                    for edge, server in _calls(client, calls, several)
                ],
            }
        )
    return json.dumps(document, indent=2) + "\n"
