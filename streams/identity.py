"""Who held which IP, and when: the stream app's time-versioned identity store.

Built from the identity topics (pods, services, nodes). For every IP it keeps
the holders over time, each with the interval it held the IP, so an event is
resolved against the holder *at the event's own time*: a reused IP never
gives an old event to a new pod or the reverse. The rules (docs/streams.md,
"Resolution", is the contract):

- a pod holds its IPs from when its status first reported them
  (``ips_since``; its creation time when that is unknown) until its
  deletion; a pod without IPs (Pending) holds nothing;
- at an event's time, the holder is the one whose interval contains it; when
  intervals overlap (a deletion not seen yet), the one that started last,
  because an IP is only handed out again once it was freed (equal times: the
  greater key, so that the answer never depends on the order records came in);
- else a pod whose holding starts at most ``clock_skew`` seconds after the
  event (node and API server clocks differ): the earliest such;
- else a pod deleted at most ``deletion_grace`` seconds before the event
  (terminating pods keep serving): the latest deleted;
- hostNetwork pods do not claim their node's IPs: those resolve to the node;
- services hold their cluster IPs from creation, nodes their addresses, both
  until deleted;
- a service's workloads are versioned too: :meth:`IdentityStore.workloads_at`
  gives the workloads behind it at a call's time;
- pods are found by name, and by hostname under a headless service, only
  while they live: the live pod of a name is the one created last, and a
  deleted pod never answers;
- a tombstone (``None`` for a key) forgets the object entirely.

It keeps what resolution needs: a pod's labels are dropped, and the strings
that repeat from pod to pod (cluster, namespace, node, workload) are shared,
so a large cluster's store stays small.

Pure: plain dictionaries, no I/O, no clock.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import msgspec

from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity, ServiceWorkload, WorkloadRef

HolderKind = Literal["pod", "service", "node"]

DEFAULT_CLOCK_SKEW = 5.0
DEFAULT_DELETION_GRACE = 60.0
DEFAULT_WORKLOAD_HISTORY = 900.0
"""Seconds a service's replaced workloads still answer for calls made before the change."""
MAX_WORKLOAD_VERSIONS = 16


@dataclass(frozen=True, slots=True, eq=False)
class Holding:
    """One holder of one IP over [start, end).

    Compared and hashed by identity: every update of an object makes new
    holdings, so a holding also names one version of its holder.
    """

    start: float
    end: float
    kind: HolderKind
    key: str  # pod UID, "namespace/name" of a service, or node name


@dataclass(frozen=True, slots=True, eq=False)
class WorkloadsVersion:
    """The workloads behind a service from ``since`` on. Compared by identity."""

    since: float
    workloads: tuple[ServiceWorkload, ...]


PodName = tuple[str, str]  # (namespace, name)
HostName = tuple[str, str, str]  # (namespace, subdomain, hostname)
Uids = str | tuple[str, ...]  # one pod's UID, as nearly always, or several (a name reused)
K = TypeVar("K", PodName, HostName)


@dataclass(slots=True)
class IdentityStore:
    """Pods, services and nodes, indexed by IP over time and by name."""

    clock_skew: float = DEFAULT_CLOCK_SKEW
    deletion_grace: float = DEFAULT_DELETION_GRACE
    workload_history: float = DEFAULT_WORKLOAD_HISTORY
    pods: dict[str, PodIdentity] = field(default_factory=dict)
    services: dict[str, ServiceIdentity] = field(default_factory=dict)
    nodes: dict[str, NodeIdentity] = field(default_factory=dict)
    pods_version: int = 0
    """Bumped by every pod update: what was derived from pods may have changed."""
    services_version: int = 0
    """Bumped by every service update."""
    by_ip: dict[str, list[Holding]] = field(default_factory=dict)
    """Every IP's holdings. Read it; only the ``put_*`` methods change it."""
    by_node_port: dict[int, str] = field(default_factory=dict)
    changes: set[str] | None = None
    """The IPs whose holdings changed and the pods updated since its reader last emptied
    it; None (the default): not kept."""
    """The service (``namespace/name``) that owns each node port."""
    _names: dict[PodName, Uids] = field(default_factory=dict)
    _hostnames: dict[HostName, Uids] = field(default_factory=dict)
    _workloads: dict[str, list[WorkloadsVersion]] = field(default_factory=dict)

    # --- updates ---------------------------------------------------------------

    def put_pod(self, uid: str, pod: PodIdentity | None) -> None:
        self.pods_version += 1
        if self.changes is not None:
            self.changes.add(uid)
        old = self.pods.pop(uid, None)
        if old is not None:
            self._release(old.ips, "pod", uid)
            _unindex(self._names, (old.namespace, old.name), uid)
            if old.hostname and old.subdomain:
                _unindex(self._hostnames, (old.namespace, old.subdomain, old.hostname), uid)
        if pod is None:
            return
        pod = _compact(pod)
        self.pods[uid] = pod
        if pod.deleted is None:  # a deleted pod never answers for its names
            _index(self._names, (pod.namespace, pod.name), uid)
            if pod.hostname and pod.subdomain:
                _index(self._hostnames, (pod.namespace, pod.subdomain, pod.hostname), uid)
        if not pod.host_network:
            since = pod.ips_since if pod.ips_since is not None else pod.created
            start = -math.inf if since is None else since
            end = math.inf if pod.deleted is None else pod.deleted
            self._hold(pod.ips, Holding(start, end, "pod", uid))

    def put_service(self, key: str, service: ServiceIdentity | None) -> None:
        self.services_version += 1
        old = self.services.pop(key, None)
        if old is not None:
            self._release(old.cluster_ips, "service", key)
            for port in old.ports:
                if port.node_port is not None and self.by_node_port.get(port.node_port) == key:
                    del self.by_node_port[port.node_port]
        if service is None:
            self._workloads.pop(key, None)
            return
        self.services[key] = service
        self._version_workloads(key, service)
        start = -math.inf if service.created is None else service.created
        end = math.inf if service.deleted is None else service.deleted
        self._hold(service.cluster_ips, Holding(start, end, "service", key))
        if service.deleted is None:
            for port in service.ports:
                if port.node_port is not None:
                    self.by_node_port[port.node_port] = key

    def put_node(self, name: str, node: NodeIdentity | None) -> None:
        old = self.nodes.pop(name, None)
        if old is not None:
            self._release(old.ips, "node", name)
        if node is None:
            return
        self.nodes[name] = node
        end = math.inf if node.deleted is None else node.deleted
        self._hold(node.ips, Holding(-math.inf, end, "node", name))

    def _hold(self, ips: tuple[str, ...], holding: Holding) -> None:
        if self.changes is not None:
            self.changes.update(ips)
        for ip in ips:
            self.by_ip.setdefault(ip, []).append(holding)

    def _release(self, ips: tuple[str, ...], kind: HolderKind, key: str) -> None:
        if self.changes is not None:
            self.changes.update(ips)
        for ip in ips:
            holdings = [h for h in self.by_ip.get(ip, ()) if not (h.kind == kind and h.key == key)]
            if holdings:
                self.by_ip[ip] = holdings
            else:
                self.by_ip.pop(ip, None)

    def _version_workloads(self, key: str, service: ServiceIdentity) -> None:
        """Keep the service's workloads over time: a new set starts a new version."""
        versions = self._workloads.get(key)
        since = service.workloads_since
        if versions and versions[-1].workloads == service.workloads:
            return
        if since is None or not versions:
            self._workloads[key] = [WorkloadsVersion(-math.inf, service.workloads)]
            return
        kept = [v for v in versions if v.since < since]  # a replay replaces what it covers
        kept.append(WorkloadsVersion(since, service.workloads))
        horizon = since - self.workload_history
        while len(kept) > 1 and (len(kept) > MAX_WORKLOAD_VERSIONS or kept[1].since <= horizon):
            kept.pop(0)
        self._workloads[key] = kept

    # --- lookups ---------------------------------------------------------------

    def holder(self, ip: str, ts: float) -> Holding | None:
        """Who held ``ip`` at ``ts``, or None if nobody is known to (rules above)."""
        holdings = self.by_ip.get(ip)
        if not holdings:
            return None
        best: Holding | None = None
        for h in holdings:  # strictly inside an interval: the latest start wins
            if h.start <= ts < h.end and (
                best is None or (h.start, h.key) > (best.start, best.key)
            ):
                best = h
        if best is not None:
            return best
        for h in holdings:  # starting a moment after the event, by another clock
            if h.start - self.clock_skew <= ts < h.start and (
                best is None or (h.start, h.key) < (best.start, best.key)
            ):
                best = h
        if best is not None:
            return best
        for h in holdings:  # a pod terminating, within its grace period
            terminating = h.kind == "pod" and h.end <= ts < h.end + self.deletion_grace
            if terminating and (best is None or (h.end, h.key) > (best.end, best.key)):
                best = h
        return best

    def pod(self, uid: str) -> PodIdentity | None:
        return self.pods.get(uid)

    def pod_named(self, namespace: str, name: str) -> PodIdentity | None:
        """The live pod called ``name``: the one created last if a name was reused."""
        return self._live(self._names.get((namespace, name)))

    def pod_by_hostname(self, namespace: str, subdomain: str, hostname: str) -> PodIdentity | None:
        """The live pod named ``<hostname>.<subdomain>`` in ``namespace``'s headless service."""
        return self._live(self._hostnames.get((namespace, subdomain, hostname)))

    def _live(self, uids: Uids | None) -> PodIdentity | None:
        if uids is None:
            return None
        if isinstance(uids, str):
            return self.pods[uids]
        pods = [self.pods[uid] for uid in uids]
        return max(pods, key=lambda p: (-math.inf if p.created is None else p.created, p.uid))

    def service(self, namespace: str, name: str) -> ServiceIdentity | None:
        return self.services.get(f"{namespace}/{name}")

    def workloads_at(self, key: str, ts: float) -> WorkloadsVersion:
        """The version of service ``key``'s workloads in effect at ``ts``.

        A call before the oldest version kept gets the oldest: nothing older is known.
        """
        versions = self._workloads[key]
        for version in reversed(versions):
            if version.since <= ts:
                return version
        return versions[0]

    def workload_versions(self, key: str) -> int:
        """How many versions of service ``key``'s workloads are kept."""
        return len(self._workloads.get(key, ()))

    def __len__(self) -> int:
        return len(self.pods) + len(self.services) + len(self.nodes)


def _index(index: dict[K, Uids], key: K, uid: str) -> None:
    uids: Uids | None = index.get(key)
    if uids is None or uids == uid:
        index[key] = uid
    elif isinstance(uids, tuple):
        if uid not in uids:
            index[key] = uids + (uid,)  # noqa: RUF005 (mypy cannot unpack the alias)
    else:
        index[key] = (uids, uid)


def _unindex(index: dict[K, Uids], key: K, uid: str) -> None:
    uids: Uids | None = index.get(key)
    if uids is None or uids == uid:
        index.pop(key, None)
    elif isinstance(uids, tuple) and uid in uids:
        rest = tuple(u for u in uids if u != uid)
        index[key] = rest[0] if len(rest) == 1 else rest


def _compact(pod: PodIdentity) -> PodIdentity:
    """``pod`` without its labels, its repeated strings shared."""
    intern = sys.intern
    return msgspec.structs.replace(
        pod,
        cluster=intern(pod.cluster),
        namespace=intern(pod.namespace),
        node=intern(pod.node) if pod.node else pod.node,
        workload=WorkloadRef(kind=intern(pod.workload.kind), name=intern(pod.workload.name)),
        labels={},
    )
