"""Which edges a map command looks at: ``--namespace``, ``--client``, ``--server``,
``--cluster``, ``--since`` and ``--include-expired``.

An edge *matches* when it is live enough (not expired unless asked, seen since
the cut-off), touches a wanted cluster (either side: a cluster's map holds its
peers' calls into it and its calls out) and touches what was asked for. Policy
and intent exports ask instead which workloads the filters *cover* (in the
asked namespaces and clusters), and then write every live edge of those
workloads: a policy that held only the filtered edges would deny the
workload's other peers. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from callmap.errors import ConfigError
from callmap.wire import Edge, Endpoint
from sinks.endpoints import names, placed, touches

_DURATION = re.compile(r"^(?P<count>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """A cut-off time from ``90m``, ``24h``, ``7d`` (before ``now``) or an ISO 8601 time."""
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match["count"]) * _SECONDS[match["unit"]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected a duration such as 30m, 24h, 7d or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class MapFilter:
    """What to keep; an empty set means "any"."""

    namespaces: frozenset[str] = frozenset()
    """Keep edges with the client or the server in one of these namespaces."""
    clients: frozenset[str] = frozenset()
    """Keep edges whose client answers to one of these names (``name`` or ``ns/name``)."""
    servers: frozenset[str] = frozenset()
    """Keep edges whose server answers to one of these names (name, DNS name, IP, service)."""
    clusters: frozenset[str] = frozenset()
    """Keep edges with the client or the server in one of these clusters."""
    since: float | None = None
    """Keep edges last seen at or after this time."""
    include_expired: bool = False
    """Keep expired edges too (left out by default)."""

    def live(self, edge: Edge) -> bool:
        """Not expired (unless asked), seen since the cut-off, touching a wanted cluster."""
        if edge.event == "expired" and not self.include_expired:
            return False
        if self.since is not None and edge.last_seen < self.since:
            return False
        return not self.clusters or touches(edge, self.clusters)

    def matches(self, edge: Edge) -> bool:
        if not self.live(edge):
            return False
        if self.namespaces and not (
            edge.client.namespace in self.namespaces or edge.server.namespace in self.namespaces
        ):
            return False
        if self.clients and not names(edge.client) & self.clients:
            return False
        return not self.servers or bool(names(edge.server) & self.servers)

    def select(self, edges: Iterable[Edge]) -> list[Edge]:
        return [edge for edge in edges if self.matches(edge)]

    def in_namespaces(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` lies in the asked namespaces (any, when none were asked)."""
        return not self.namespaces or endpoint.namespace in self.namespaces

    def in_scope(self, endpoint: Endpoint) -> bool:
        """Whether a placed ``endpoint`` (carrying its cluster) lies in the asked
        namespaces and clusters: what a policy may be written for."""
        return self.in_namespaces(endpoint) and (
            not self.clusters or endpoint.cluster in self.clusters
        )

    def covered_clients(self, edges: Iterable[Edge]) -> set[Endpoint]:
        """Clients a per-client output covers (placed in their cluster): in the
        namespaces and clusters, with a matching edge."""
        found = (placed(e, e.client) for e in edges if self.matches(e))
        return {client for client in found if self.in_scope(client)}

    def covered_servers(self, edges: Iterable[Edge]) -> set[Endpoint]:
        """Servers a per-server output covers (placed in their cluster): in the
        namespaces and clusters, with a matching edge."""
        found = (placed(e, e.server) for e in edges if self.matches(e))
        return {server for server in found if self.in_scope(server)}
