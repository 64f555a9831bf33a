"""Which clusters are heard from, and which went quiet. Pure.

Every cluster's watch leader publishes a :class:`ClusterInfo` heartbeat
(``callmap.clusters.v1``). A cluster is *stale* when no heartbeat arrived for
``missed`` heartbeat intervals: its pipeline, its mirror or the cluster itself
stopped. A cluster that never sent a heartbeat is not judged. Stale clusters
keep their edges (they expire on their own TTL); the figure is for people
(metrics, a log line), not for the map.

A cluster id (the kube-system UID) seen under two aliases is counted: the same
cluster mirrored twice, or two clusters sharing an alias in a shared topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from callmap.counters import StageCounters
from callmap.wire import ClusterInfo

DEFAULT_MISSED = 3


@dataclass(slots=True)
class ClusterStatus:
    """What the aggregator last heard from one cluster."""

    name: str
    uid: str | None = None
    heartbeat: float | None = None
    """The interval the cluster promised (seconds); None before its first heartbeat."""
    heard_at: float | None = None
    """Arrival time of its latest heartbeat."""
    records_at: float | None = None
    """Arrival time of its latest record of any kind."""

    def stale(self, now: float, missed: int = DEFAULT_MISSED) -> bool:
        """True once ``missed`` heartbeats are overdue; a cluster that never sent one is
        not judged (its pipeline may predate heartbeats)."""
        if self.heard_at is None or self.heartbeat is None:
            return False
        return now - self.heard_at > missed * self.heartbeat


class ClusterHealth:
    """Heartbeats and record arrivals, by cluster."""

    def __init__(self, counters: StageCounters, missed: int = DEFAULT_MISSED) -> None:
        self.counters = counters
        self.missed = missed
        self.clusters: dict[str, ClusterStatus] = {}
        self._aliases: dict[str, str] = {}  # uid -> alias

    def heard(self, cluster: str, now: float) -> None:
        """A record of ``cluster`` arrived."""
        self._status(cluster).records_at = now

    def heartbeat(self, cluster: str, info: ClusterInfo, now: float) -> None:
        status = self._status(cluster)
        status.uid, status.heartbeat, status.heard_at, status.records_at = (
            info.uid,
            info.heartbeat,
            now,
            now,
        )
        known = self._aliases.setdefault(info.uid, cluster)
        if known != cluster:
            self.counters.drop("cluster_uid_under_two_aliases")

    def stale(self, now: float) -> list[str]:
        """The clusters not heard from in ``missed`` heartbeats, by name."""
        return sorted(n for n, s in self.clusters.items() if s.stale(now, self.missed))

    def conflicts(self) -> dict[str, list[str]]:
        """Cluster ids seen under more than one alias: uid -> aliases."""
        by_uid: dict[str, list[str]] = {}
        for status in self.clusters.values():
            if status.uid is not None:
                by_uid.setdefault(status.uid, []).append(status.name)
        return {uid: sorted(names) for uid, names in by_uid.items() if len(names) > 1}

    def _status(self, cluster: str) -> ClusterStatus:
        status = self.clusters.get(cluster)
        if status is None:
            status = self.clusters[cluster] = ClusterStatus(cluster)
        return status
