"""``callmap list``: the map as the text people know, or the same as JSON.

::

    checkoutservice in namespace shop calls:
      - cartservice
      - ledger in namespace finance
      - api.stripe.com (external)

Clients are sorted by namespace and name; under each, servers in the client's
namespace come first, then other namespaces, then the API server, nodes,
externals and unresolved IPs. Expired edges (shown only when asked) are
marked. Every name passes through :func:`sinks.escape.terminal`, so a hostile
name cannot start a new line or move the cursor. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from callmap.wire import Edge, Endpoint
from sinks.endpoints import client_key, describe, edge_sort_key, heading, identity, sort_key
from sinks.escape import terminal


def _by_client(edges: Iterable[Edge]) -> list[tuple[tuple[str, Endpoint], list[Edge]]]:
    groups: dict[tuple[str, Endpoint], list[Edge]] = {}
    for edge in sorted(edges, key=edge_sort_key):
        groups.setdefault((edge.cluster, identity(edge.client)), []).append(edge)
    return sorted(groups.items(), key=lambda item: (item[0][0], client_key(item[0][1])))


def render_text(edges: Iterable[Edge]) -> str:
    """The map as text; a cluster is named only when there are several."""
    groups = _by_client(edges)
    several = len({cluster for (cluster, _), _ in groups}) > 1
    lines: list[str] = []
    for (cluster, client), calls in groups:
        where = f" (cluster {terminal(cluster)})" if several else ""
        lines.append(f"{terminal(heading(client))}{where} calls:")
        seen: set[str] = set()
        for edge in sorted(calls, key=lambda e: sort_key(e.server, client.namespace)):
            line = describe(edge.server, client.namespace)
            if edge.event == "expired":
                line += " [expired]"
            if line not in seen:
                seen.add(line)
                lines.append(f"  - {terminal(line)}")
    return "".join(line + "\n" for line in lines)


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.to_builtins(endpoint)
    return value


def render_json(edges: Iterable[Edge]) -> str:
    """The same map as JSON: a list of clients, each with its calls in listing order."""
    document = []
    for (cluster, client), calls in _by_client(edges):
        document.append(
            {
                "cluster": cluster,
                "client": _endpoint(client),
                "display": heading(client),
                "calls": [
                    {
                        "server": _endpoint(edge.server),
                        "display": describe(edge.server, client.namespace),
                        "edge_id": edge.edge_id,
                        "event": edge.event,
                        "ports": list(edge.ports),
                        "sources": list(edge.sources),
                        "first_seen": edge.first_seen,
                        "last_seen": edge.last_seen,
                        "count": edge.count,
                    }
                    for edge in sorted(calls, key=lambda e: sort_key(e.server, client.namespace))
                ],
            }
        )
    return json.dumps(document, indent=2) + "\n"
