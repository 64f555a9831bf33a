"""From one cluster's edge to the global edges it means: both sides named in their cluster. Pure.

A cluster's streams name what they can within the cluster. At the hub more is
known, and three things change:

- every endpoint is placed in its cluster (``Endpoint.cluster``): a named
  client or server in the edge's own cluster, an unresolved ``ip`` in the
  cluster whose address space it was seen in, an external in none;
- an ``ip`` (client or server) is looked up again in the clusters its cluster
  reaches (:class:`~aggregate.clusterset.ClusterSet`): its own first, where a
  late identity may have arrived since, then its peers; an address that only
  one peer knows is that peer's pod, service or node, one that several
  peers know stays an ``ip`` (counted: ambiguous);
- an external named by an MCS name (``api.shop.svc.clusterset.local``)
  becomes the workloads behind the exported service in every cluster that
  exports it (one global edge each), and a headless per-pod MCS name the
  workload of that pod in that cluster.

Lookups use the time-versioned identity stores of each cluster at the
edge's ``last_seen``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from aggregate.clusterset import (
    ClusterSet,
    ClusterSetPod,
    ClusterSetService,
    classify_clusterset_name,
)
from callmap.counters import StageCounters
from callmap.wire import Edge, Endpoint
from streams.identity import IdentityStore
from streams.resolve import behind, workload_of

PLACED_CACHE = 50_000
"""Endpoints placed in a cluster kept for sharing; beyond it the cache starts over."""

Pair = tuple[Endpoint, Endpoint]
"""A global edge's (client, server), each carrying its cluster (None for externals)."""


class Globalizer:
    """Names one cluster's edges across every cluster the hub knows."""

    def __init__(
        self,
        stores: Mapping[str, IdentityStore],
        clusterset: ClusterSet,
        counters: StageCounters,
    ) -> None:
        self.stores = stores
        self.clusterset = clusterset
        self.counters = counters
        self._placed: dict[tuple[Endpoint, str | None], Endpoint] = {}

    def pairs(self, cluster: str, edge: Edge) -> list[Pair]:
        """The global (client, server) pairs of ``edge``, an edge of ``cluster``."""
        ts = edge.last_seen
        clients = self._side(cluster, edge.client, ts, as_client=True)
        servers = self._side(cluster, edge.server, ts, as_client=False)
        return [(client, server) for client in clients for server in servers]

    def client_cluster(self, cluster: str, edge: Edge) -> str | None:
        """The cluster of ``edge``'s client, without naming its server (cheap)."""
        if edge.client.type != "ip":
            return cluster
        return self._side(cluster, edge.client, edge.last_seen, as_client=True)[0].cluster

    def follows_exports(self, edge: Edge) -> bool:
        """True if ``edge``'s server is a clusterset name: which clusters export the
        service can change, so its pairs are named again when identities do."""
        server = edge.server
        return (
            server.type == "external"
            and server.dns_name is not None
            and classify_clusterset_name(server.dns_name, self.clusterset.domain) is not None
        )

    def unresolved(self, pairs: list[Pair]) -> bool:
        """True if a lookup could name more of ``pairs`` once identities arrive."""
        return any(
            endpoint.type == "ip"
            or (
                endpoint.type == "external"
                and endpoint.dns_name is not None
                and classify_clusterset_name(endpoint.dns_name, self.clusterset.domain) is not None
            )
            for pair in pairs
            for endpoint in pair
        )

    # --- one side -------------------------------------------------------------

    def _side(self, cluster: str, endpoint: Endpoint, ts: float, as_client: bool) -> list[Endpoint]:
        match endpoint.type:
            case "ip" if endpoint.ip is not None:
                found = self._by_ip(cluster, endpoint.ip, ts, as_client)
                return found if found is not None else [self._place(endpoint, cluster)]
            case "external":
                name = endpoint.dns_name
                meaning = (
                    None
                    if name is None or as_client
                    else classify_clusterset_name(name, self.clusterset.domain)
                )
                if meaning is not None:
                    exported = self._exported(meaning, ts)
                    if exported:
                        self.counters.emitted += 1
                        return exported
                    self.counters.drop("clusterset_name_unexported")
                return [self._place(endpoint, None)]
            case _:
                return [self._place(endpoint, cluster)]

    def _by_ip(self, cluster: str, ip: str, ts: float, as_client: bool) -> list[Endpoint] | None:
        """What ``ip``, seen in ``cluster``, is: in the cluster itself, else in one peer."""
        found: list[tuple[str, list[Endpoint]]] = []
        for candidate in self.clusterset.reachable(cluster):
            store = self.stores.get(candidate)
            endpoints = None if store is None else _at(store, ip, ts, as_client)
            if endpoints is not None:
                if candidate == cluster:
                    return [self._place(e, candidate) for e in endpoints]
                found.append((candidate, endpoints))
        if len(found) == 1:
            self.counters.emitted += 1
            peer, endpoints = found[0]
            return [self._place(e, peer) for e in endpoints]
        if found:
            self.counters.drop("ip_ambiguous")
        return None

    def _exported(self, name: ClusterSetService | ClusterSetPod, ts: float) -> list[Endpoint]:
        """The workloads an MCS name reaches, in every cluster that exports the service."""
        clusters = sorted(self.stores) if isinstance(name, ClusterSetService) else [name.cluster]
        endpoints: list[Endpoint] = []
        for cluster in clusters:
            store = self.stores.get(cluster)
            service = None if store is None else store.service(name.namespace, name.service)
            if store is None or service is None or not service.exported or service.deleted:
                continue
            if isinstance(name, ClusterSetService):
                found = behind(store, f"{name.namespace}/{name.service}", ts)
            else:
                pod = store.pod_by_hostname(name.namespace, name.service, name.hostname)
                found = [] if pod is None else [workload_of(pod, service=name.service)]
            endpoints.extend(self._place(e, cluster) for e in found)
        return endpoints

    def _place(self, endpoint: Endpoint, cluster: str | None) -> Endpoint:
        """``endpoint`` in ``cluster``; equal endpoints share one object (memory)."""
        key = (endpoint, cluster)
        placed = self._placed.get(key)
        if placed is None:
            placed = (
                endpoint
                if endpoint.cluster == cluster
                else msgspec.structs.replace(endpoint, cluster=cluster)
            )
            if len(self._placed) >= PLACED_CACHE:
                self._placed.clear()
            self._placed[key] = placed
        return placed


def _at(store: IdentityStore, ip: str, ts: float, as_client: bool) -> list[Endpoint] | None:
    """What ``ip`` is in one cluster at ``ts``; None if that cluster does not know it."""
    holder = store.holder(ip, ts)
    if holder is None:
        return None
    if holder.kind == "pod":
        return [workload_of(store.pods[holder.key])]
    if holder.kind == "node":
        return [Endpoint(type="node", name=holder.key, ip=ip)]
    if as_client:  # a service address is never a connection's source
        return None
    return behind(store, holder.key, ts)
