"""The hub's identity view: every cluster's pods, services and nodes, and heartbeats. Pure.

One time-versioned :class:`~streams.identity.IdentityStore` per cluster (the
stream app's own, so that an address means at the hub exactly what it means
in its cluster), fed from the identity topics of every cluster: mirrored
(``east.callmap.pods.v1``, the alias names the cluster) or shared (the
record's ``cluster`` does). Messages that do not decode raise
:class:`~callmap.errors.WireDecodeError` for the adapter to count and
dead-letter.
"""

from __future__ import annotations

from aggregate.health import ClusterHealth
from aggregate.sources import SourceTopic
from callmap.counters import Counters
from callmap.wire import (
    CLUSTERS,
    NODES,
    PODS,
    SERVICES,
    ClusterInfo,
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    decode,
)
from callmap.wire.topics import split_identity_key
from streams.identity import IdentityStore


class Identities:
    """Identity stores by cluster, and what each cluster last said of itself."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.stores: dict[str, IdentityStore] = {}
        self.health = ClusterHealth(counters.stage("clusters"))
        self.version = 0
        """Bumped by every change: what was resolved against the stores may name more now."""
        self._pod_clusters: dict[str, str] = {}  # pod UID -> cluster, for shared tombstones

    def apply(
        self, source: SourceTopic, key: bytes | None, value: bytes | None, now: float
    ) -> None:
        """One message of an identity topic (``value`` None: a tombstone)."""
        stage = self.counters.stage("identities")
        stage.seen += 1
        spec = source.spec
        if key is None:
            stage.drop("no_key")
            return
        record = None if value is None else decode(spec, value)
        if spec is CLUSTERS:
            if isinstance(record, ClusterInfo):
                self.health.heartbeat(source.cluster_of(record.cluster), record, now)
            return
        cluster = self._cluster(source, key, record)
        if cluster is None:
            stage.drop("tombstone_of_unknown_pod")
            return
        self.health.heard(cluster, now)
        store = self.store(cluster)
        _, local = split_identity_key(spec, key)
        if spec is PODS:
            pod = record if isinstance(record, PodIdentity) else None
            store.put_pod(local, pod)
            if pod is None:
                self._pod_clusters.pop(local, None)
            else:
                self._pod_clusters[local] = cluster
        elif spec is SERVICES:
            store.put_service(local, record if isinstance(record, ServiceIdentity) else None)
        elif spec is NODES:
            store.put_node(local, record if isinstance(record, NodeIdentity) else None)
        self.version += 1
        stage.emitted += 1

    def store(self, cluster: str) -> IdentityStore:
        store = self.stores.get(cluster)
        if store is None:
            store = self.stores[cluster] = IdentityStore()
        return store

    def _cluster(self, source: SourceTopic, key: bytes, record: object) -> str | None:
        if source.alias is not None:
            return source.alias
        if isinstance(record, PodIdentity | ServiceIdentity | NodeIdentity):
            return record.cluster
        if source.spec is PODS:
            return self._pod_clusters.get(key.decode(errors="replace"))
        cluster, _ = split_identity_key(source.spec, key)
        return cluster

    def __len__(self) -> int:
        return sum(len(store) for store in self.stores.values())
