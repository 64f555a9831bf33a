"""Edge identity and lifecycle: the stream app's deduplication. Pure.

An edge is (cluster, client, server). Only what names an endpoint counts for
identity (a workload's namespace, kind and name; an external's DNS name; an
address for ``ip``); attributes such as the service a workload was reached
through, or the address of an external name, are merged into the edge.
``edge_id`` is a stable hash of the identity, the same in every process and
release.

Lifecycle, with ``now`` given by the caller:

- ``new`` the first time an edge is seen (and again after it expired);
- ``refresh`` at most once per ``refresh_interval``, and only if the edge was
  seen since its last announcement, or has health to tell;

Every ``new`` and ``refresh`` carries the edge's ``health`` since the previous
one and its ``health_total`` since ``new``. A sighting with ``count`` 0
carries health alone: it changes no time, count, port or source, and needs an
edge (:func:`sighted` is not given one without a state).
- ``expired`` once nothing saw it for ``ttl`` seconds; its state is dropped.
"""

from __future__ import annotations

import hashlib

import msgspec

from callmap.wire import Edge, EdgeSighting, Endpoint, FlowHealth, total_health
from callmap.wire.records import EdgeEvent, EdgeSource

DEFAULT_REFRESH_INTERVAL = 300.0
DEFAULT_TTL = 24 * 3600.0


def identity(endpoint: Endpoint) -> tuple[str | None, ...]:
    """The fields of an endpoint that say which endpoint it is."""
    match endpoint.type:
        case "workload":
            return ("workload", endpoint.namespace, endpoint.kind, endpoint.name)
        case "service":
            return ("service", endpoint.namespace, endpoint.name)
        case "external":
            return ("external", endpoint.dns_name or endpoint.ip)
        case "node":
            return ("node", endpoint.name)
        case "apiserver":
            return ("apiserver",)
        case _:
            return ("ip", endpoint.ip)


def edge_id(cluster: str, client: Endpoint, server: Endpoint) -> str:
    """128 bits of SHA-256 over the canonical JSON of the edge's identity."""
    canonical = msgspec.json.encode([cluster, identity(client), identity(server)])
    return hashlib.sha256(canonical).hexdigest()[:32]


def merge_endpoint(old: Endpoint, new: Endpoint) -> Endpoint:
    """Keep the identity; take attributes the newer sighting knows."""
    if old == new:
        return old
    return msgspec.structs.replace(
        old,
        service=new.service or old.service,
        dns_name=new.dns_name or old.dns_name,
        ip=new.ip or old.ip,
    )


class EdgeState(msgspec.Struct, array_like=True):
    """What the owner of an edge remembers about it between sightings.

    Stored in the stream app's table as a JSON array (:func:`dump_state`).
    """

    edge_id: str
    cluster: str
    client: Endpoint
    server: Endpoint
    first_seen: float
    last_seen: float
    count: int
    ports: set[int] = msgspec.field(default_factory=set)
    sources: set[EdgeSource] = msgspec.field(default_factory=set)
    announced_at: float = 0.0  # processing time of the last new/refresh
    seen_since_announced: bool = False
    # Last, as states are JSON arrays: one stored without it decodes with none.
    udp_ports: set[int] = msgspec.field(default_factory=set)
    health: FlowHealth | None = None  # since the last new or refresh
    health_total: FlowHealth | None = None  # since new

    def edge(self, event: EdgeEvent) -> Edge:
        client_id, server_id = identity(self.client), identity(self.server)
        return Edge(
            edge_id=self.edge_id,
            event=event,
            cluster=self.cluster,
            client=self.client,
            server=self.server,
            ports=tuple(sorted(self.ports)),
            udp_ports=tuple(sorted(self.udp_ports)),
            sources=tuple(sorted(self.sources)),
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            count=self.count,
            self_edge=client_id == server_id and self.client.type == "workload",
            health=self.health,
            health_total=self.health_total,
        )

    def add_health(self, health: FlowHealth | None) -> None:
        if health is not None:
            self.health = total_health((self.health, health))
            self.health_total = total_health((self.health_total, health))

    def announce(self, event: EdgeEvent, now: float) -> Edge:
        """The ``new`` or ``refresh`` announcement; its health is told, so starts again."""
        edge = self.edge(event)
        self.announced_at = now
        self.seen_since_announced = False
        self.health = None
        return edge


def sighted(
    state: EdgeState | None, sighting: EdgeSighting, now: float, refresh_interval: float
) -> tuple[EdgeState, Edge | None]:
    """Merge a sighting; return the new state and what to announce, if anything.

    A sighting with ``count`` 0 (health alone) needs a ``state``: health makes no edge.
    """
    if state is None:
        state = EdgeState(
            edge_id=sighting.edge_id,
            cluster=sighting.cluster,
            client=sighting.client,
            server=sighting.server,
            first_seen=sighting.first_seen,
            last_seen=sighting.last_seen,
            count=sighting.count,
            ports=set(sighting.ports),
            udp_ports=set(sighting.udp_ports),
            sources=set(sighting.sources),
            health=sighting.health,
            health_total=sighting.health,
        )
        return state, state.announce("new", now)
    state.add_health(sighting.health)
    if not sighting.count:  # health alone
        return state, due(state, now, refresh_interval)
    state.client = merge_endpoint(state.client, sighting.client)
    state.server = merge_endpoint(state.server, sighting.server)
    state.first_seen = min(state.first_seen, sighting.first_seen)
    state.last_seen = max(state.last_seen, sighting.last_seen)
    state.count += sighting.count
    state.ports.update(sighting.ports)
    state.udp_ports.update(sighting.udp_ports)
    state.sources.update(sighting.sources)
    state.seen_since_announced = True
    return state, due(state, now, refresh_interval)


def due(state: EdgeState, now: float, refresh_interval: float) -> Edge | None:
    """A refresh if one is due now, else None (updates the state when one is)."""
    if (state.seen_since_announced or state.health is not None) and (
        now - state.announced_at >= refresh_interval
    ):
        return state.announce("refresh", now)
    return None


def expired(state: EdgeState, now: float, ttl: float) -> Edge | None:
    """The ``expired`` announcement if nothing saw the edge for ``ttl``, else None."""
    return state.edge("expired") if now - state.last_seen >= ttl else None


# --- state on the wire (the stream app's table) ------------------------------------


_encoder = msgspec.json.Encoder(order="deterministic")  # sets sorted: stable bytes
_decoder = msgspec.json.Decoder(EdgeState)


def dump_state(state: EdgeState) -> bytes:
    return _encoder.encode(state)


def load_state(data: bytes) -> EdgeState:
    return _decoder.decode(data)
