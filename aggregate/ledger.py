"""The global edges of the clusters a worker owns, and their lifecycle. Pure.

A global edge is fed by the source edges (one cluster's edges) that mean it:
its *contributions*, each the source edge's latest count and ``last_seen``.
Usually one, but a call seen from both sides (A's ``socket-client`` edge and
B's ``socket-server`` edge with A's pod as an ``ip`` client) or through
several addresses merges into one.

Health is counted once per connection, as a cluster's stream app counts it on
the client's node: only contributions from the client's own cluster carry
health (B's server-side view of A's calls holds the same connections A's
nodes counted). ``health_total`` is the sum of their latest
``health_total``; ``health`` is the sum of the windows they announced since
the global edge's previous announcement, so a window is told once however
the two lifecycles interleave. A replay after a restart adds no window (they
were told before it).

Its lifecycle on the global topic:

- ``new`` once, when its first contribution arrives;
- ``refresh`` at most once per ``refresh_interval``, only when a contribution
  was seen again or has health to tell (a duplicate or a replayed source message changes nothing,
  so MirrorMaker's redeliveries and the aggregator's own replays are silent);
- ``expired`` when its last contribution is gone: the source edge expired in
  its cluster, the source edge now means another global edge (an identity
  arrived), or its cluster said nothing of it for ``ttl`` (a cluster gone
  quiet keeps its edges as long as its own pipeline would, and no other
  cluster's edges are touched).

Restarts and rebalances: the worker restores the edges it announced from the
global topic itself (:meth:`Ledger.restore`), then replays every source edge
*silently* (:attr:`Ledger.replaying`) and settles the difference once
(:meth:`Ledger.settle`): what was announced and has contributions stays
announced (no second ``new``), what has none any more expires, what is new
is announced ``new``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import msgspec

from aggregate.globalize import Pair
from callmap.counters import Counters
from callmap.wire import Edge, Endpoint, FlowHealth, total_health
from callmap.wire.records import EdgeEvent, EdgeSource
from streams.edges import DEFAULT_REFRESH_INTERVAL, DEFAULT_TTL, identity, merge_endpoint

T = TypeVar("T", int, EdgeSource)


class Contribution(NamedTuple):
    """What a global edge keeps of one source edge: its latest values."""

    sightings: int
    """The source edge's ``count``."""
    last_seen: float
    health: FlowHealth | None = None
    """The source edge's latest window; None unless it is from the client's cluster."""
    health_total: FlowHealth | None = None
    """The source edge's ``health_total``; None unless it is from the client's cluster."""


def global_edge_id(client: Endpoint, server: Endpoint) -> str:
    """128 bits of SHA-256 over both endpoints' identities and clusters."""
    canonical = msgspec.json.encode(
        ["global", client.cluster, identity(client), server.cluster, identity(server)]
    )
    return hashlib.sha256(canonical).hexdigest()[:32]


def source_key(cluster: str, edge_id: str) -> str:
    """How a source edge is named at the hub: edge ids are unique per cluster only."""
    return f"{cluster}/{edge_id}"


@dataclass(slots=True)
class GlobalEdge:
    """What the ledger keeps of one global edge."""

    edge_id: str
    client: Endpoint
    server: Endpoint
    first_seen: float
    last_seen: float
    ports: tuple[int, ...]
    """TCP ports, sorted; a tuple, not a set: a million edges hold a million of them."""
    sources: tuple[EdgeSource, ...]
    contributions: dict[str, Contribution] = field(default_factory=dict)
    announced: bool = False
    """Announced ``new`` (or restored from the global topic)."""
    announced_at: float = 0.0
    seen_since_announced: bool = False
    restored_count: int = 0
    udp_ports: tuple[int, ...] = ()
    """UDP ports, sorted, merged as ``ports`` are."""
    lately: FlowHealth | None = None
    """The health windows contributions announced since this edge's last announcement."""

    @property
    def count(self) -> int:
        if not self.contributions:
            return self.restored_count
        return sum(one.sightings for one in self.contributions.values())

    @property
    def health_total(self) -> FlowHealth | None:
        """The counted contributions' ``health_total``, summed."""
        return total_health(one.health_total for one in self.contributions.values())

    def edge(self, event: EdgeEvent) -> Edge:
        return Edge(
            edge_id=self.edge_id,
            event=event,
            cluster=self.client.cluster or "",
            client=self.client,
            server=self.server,
            ports=self.ports,
            udp_ports=self.udp_ports,
            sources=self.sources,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            count=self.count,
            self_edge=identity(self.client) == identity(self.server)
            and self.client.cluster == self.server.cluster
            and self.client.type == "workload",
            health=self.lately,
            health_total=self.health_total,
        )


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    """A global edge seen again is re-announced at most this often (seconds)."""
    ttl: float = DEFAULT_TTL
    """A contribution its cluster said nothing of for this long is gone (seconds)."""


class Ledger:
    """Global edges, their contributions, and what to announce."""

    def __init__(self, settings: LedgerSettings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self.edges: dict[str, GlobalEdge] = {}
        self.by_source: dict[str, tuple[str, ...]] = {}
        """Which global edges each source edge contributes to."""
        self.replaying = False
        """While True, nothing is announced: :meth:`settle` does it once, at the end."""
        self._dirty: set[str] = set()

    # --- restore and replay -----------------------------------------------------

    def restore(self, edge: Edge, announced_at: float) -> None:
        """An edge read back from the global topic: announced already, unless expired."""
        if edge.event == "expired":
            self.edges.pop(edge.edge_id, None)
            return
        self.edges[edge.edge_id] = GlobalEdge(
            edge_id=edge.edge_id,
            client=edge.client,
            server=edge.server,
            first_seen=edge.first_seen,
            last_seen=edge.last_seen,
            ports=edge.ports,
            udp_ports=edge.udp_ports,
            sources=edge.sources,
            announced=True,
            announced_at=announced_at,
            restored_count=edge.count,
        )

    def settle(self, now: float) -> list[Edge]:
        """End a replay: announce what changed while it was silent."""
        self.replaying = False
        out: list[Edge] = []
        for edge_id in list(self.edges):
            edge = self.edges[edge_id]
            if not edge.contributions and not edge.announced:
                del self.edges[edge_id]  # came and went within the replay: never announced
            elif not edge.contributions:
                out.append(self._expire(edge))
            elif not edge.announced:
                out.append(self._announce(edge, "new", now))
        out.extend(self.refresh_due(now))
        return out

    def announced(self, pairs: list[Pair]) -> bool:
        """True if a global edge of ``pairs`` was announced already (in a replay: one
        restored from the global topic)."""
        for client, server in pairs:
            edge = self.edges.get(global_edge_id(client, server))
            if edge is not None and edge.announced:
                return True
        return False

    # --- source edges -------------------------------------------------------------

    def contribute(
        self, key: str, source: Edge, pairs: list[Pair], now: float, cluster: str | None = None
    ) -> list[Edge]:
        """Source edge ``key`` (new or refresh) of ``cluster`` (default: the record's own
        ``cluster``) now means the global edges ``pairs``."""
        out: list[Edge] = []
        ids: list[str] = []
        home = source.cluster if cluster is None else cluster
        for client, server in pairs:
            edge_id = global_edge_id(client, server)
            ids.append(edge_id)
            value = _contribution(source, counted=client.cluster == home)
            edge = self.edges.get(edge_id)
            if edge is None:
                edge = self.edges[edge_id] = GlobalEdge(
                    edge_id=edge_id,
                    client=client,
                    server=server,
                    first_seen=source.first_seen,
                    last_seen=source.last_seen,
                    ports=source.ports,
                    udp_ports=source.udp_ports,
                    sources=source.sources,
                )
                edge.contributions[key] = value
                if not self.replaying:
                    edge.lately = value.health
                    out.append(self._announce(edge, "new", now))
                continue
            before = edge.contributions.get(key)
            if before == value:
                continue  # a duplicate or a replay: nothing new
            edge.contributions[key] = value
            if value.health is not None and not self.replaying:  # a window to tell
                edge.lately = total_health((edge.lately, value.health))
                edge.seen_since_announced = True
                self._dirty.add(edge_id)
            edge.client = merge_endpoint(edge.client, client)
            edge.server = merge_endpoint(edge.server, server)
            edge.first_seen = min(edge.first_seen, source.first_seen)
            if source.last_seen > edge.last_seen:
                edge.last_seen = source.last_seen
                edge.seen_since_announced = True
                self._dirty.add(edge_id)
            edge.ports = _union(edge.ports, source.ports)
            edge.udp_ports = _union(edge.udp_ports, source.udp_ports)
            edge.sources = _union(edge.sources, source.sources)
        old = self.by_source.get(key, ())
        self.by_source[key] = tuple(ids)
        out.extend(self._withdraw(key, [i for i in old if i not in ids]))
        if not self.replaying:
            out.extend(self.refresh_due(now, ids))
        return out

    def withdraw(self, key: str) -> list[Edge]:
        """Source edge ``key`` expired in its cluster."""
        return self._withdraw(key, self.by_source.pop(key, ()))

    # --- time -----------------------------------------------------------------

    def refresh_due(self, now: float, ids: list[str] | None = None) -> list[Edge]:
        """Refreshes due now among ``ids`` (default: every edge seen since announced)."""
        out: list[Edge] = []
        interval = self.settings.refresh_interval
        for edge_id in list(self._dirty) if ids is None else ids:
            edge = self.edges.get(edge_id)
            if edge is None:
                self._dirty.discard(edge_id)
                continue
            if not (edge.announced and edge.seen_since_announced):
                continue
            if now - edge.announced_at >= interval:
                out.append(self._announce(edge, "refresh", now))
        return out

    def expire_stale(self, now: float) -> list[Edge]:
        """Drop contributions their cluster said nothing of for ``ttl``; expire what is left
        with none."""
        if self.replaying:
            return []
        horizon = now - self.settings.ttl
        out: list[Edge] = []
        for edge_id in list(self.edges):
            edge = self.edges[edge_id]
            stale = [key for key, one in edge.contributions.items() if one.last_seen <= horizon]
            if not stale:
                continue
            for key in stale:
                del edge.contributions[key]
                self._unlink(key, edge_id)
            if not edge.contributions:
                self.counters.events["global_edge_ttl"] += 1
                out.append(self._expire(edge))
        return out

    def clear(self) -> None:
        """Forget everything (a rebalance: the worker restores and replays again)."""
        self.edges.clear()
        self.by_source.clear()
        self._dirty.clear()

    # --- inside -----------------------------------------------------------------

    def _withdraw(self, key: str, ids: list[str] | tuple[str, ...]) -> list[Edge]:
        out: list[Edge] = []
        for edge_id in ids:
            edge = self.edges.get(edge_id)
            if edge is None or edge.contributions.pop(key, None) is None:
                continue
            if not edge.contributions and not self.replaying:
                out.append(self._expire(edge))
        return out

    def _unlink(self, key: str, edge_id: str) -> None:
        rest = tuple(i for i in self.by_source.get(key, ()) if i != edge_id)
        if rest:
            self.by_source[key] = rest
        else:
            self.by_source.pop(key, None)

    def _announce(self, edge: GlobalEdge, event: EdgeEvent, now: float) -> Edge:
        """The ``new`` or ``refresh`` announcement; its health window is told, so starts
        again."""
        edge.announced = True
        edge.announced_at = now
        edge.seen_since_announced = False
        self._dirty.discard(edge.edge_id)
        self.counters.events[f"edge_{event}"] += 1
        announced = edge.edge(event)
        edge.lately = None
        return announced

    def _expire(self, edge: GlobalEdge) -> Edge:
        del self.edges[edge.edge_id]
        self._dirty.discard(edge.edge_id)
        self.counters.events["edge_expired"] += 1
        return edge.edge("expired")


def _contribution(source: Edge, counted: bool) -> Contribution:
    """What a global edge keeps of ``source``; its health only when ``counted`` (the source
    is from the global client's cluster, whose nodes counted the connections)."""
    if not counted:
        return Contribution(source.count, source.last_seen)
    return Contribution(source.count, source.last_seen, source.health, source.health_total)


def _union(kept: tuple[T, ...], more: tuple[T, ...]) -> tuple[T, ...]:
    """Both sorted tuples' items, sorted; ``kept`` itself when ``more`` adds nothing."""
    if all(item in kept for item in more):
        return kept
    merged: set[T] = set(kept)
    merged.update(more)
    return tuple(sorted(merged))
