"""Who held which IP, and when: the stream app's time-versioned identity store.

Built from the identity topics (pods, services, nodes). For every IP it keeps
the holders over time, each with the interval it held the IP, so an event is
resolved against the holder *at the event's own time*: a reused IP never
gives an old event to a new pod or the reverse. It promises:

- a pod holds its IPs from its creation until its deletion; within
  ``deletion_grace`` after a deletion the pod still answers for its IPs when
  nobody else holds them (a terminating pod keeps serving for its grace
  period);
- an event up to ``clock_skew`` seconds before a pod's creation resolves to
  it when nobody held the IP at that time (node and API server clocks differ);
- hostNetwork pods do not claim their node's IPs: those resolve to the node;
- services hold their cluster IPs and nodes their addresses until deleted;
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
from typing import Literal

import msgspec

from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity, WorkloadRef

HolderKind = Literal["pod", "service", "node"]

DEFAULT_CLOCK_SKEW = 5.0
DEFAULT_DELETION_GRACE = 60.0


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


@dataclass(slots=True)
class IdentityStore:
    """Pods, services and nodes, indexed by IP over time and by name."""

    clock_skew: float = DEFAULT_CLOCK_SKEW
    deletion_grace: float = DEFAULT_DELETION_GRACE
    pods: dict[str, PodIdentity] = field(default_factory=dict)
    services: dict[str, ServiceIdentity] = field(default_factory=dict)
    nodes: dict[str, NodeIdentity] = field(default_factory=dict)
    pods_version: int = 0
    """Bumped by every pod update: what was derived from pods may have changed."""
    services_version: int = 0
    """Bumped by every service update."""
    by_ip: dict[str, list[Holding]] = field(default_factory=dict)
    """Every IP's holdings. Read it; only the ``put_*`` methods change it."""
    _pod_by_name: dict[tuple[str, str], str] = field(default_factory=dict)

    # --- updates ---------------------------------------------------------------

    def put_pod(self, uid: str, pod: PodIdentity | None) -> None:
        self.pods_version += 1
        old = self.pods.pop(uid, None)
        if old is not None:
            self._release(old.ips, "pod", uid)
            if self._pod_by_name.get((old.namespace, old.name)) == uid:
                del self._pod_by_name[(old.namespace, old.name)]
        if pod is None:
            return
        pod = _compact(pod)
        self.pods[uid] = pod
        self._pod_by_name[(pod.namespace, pod.name)] = uid
        if not pod.host_network:
            start = -math.inf if pod.created is None else pod.created
            end = math.inf if pod.deleted is None else pod.deleted
            self._hold(pod.ips, Holding(start, end, "pod", uid))

    def put_service(self, key: str, service: ServiceIdentity | None) -> None:
        self.services_version += 1
        old = self.services.pop(key, None)
        if old is not None:
            self._release(old.cluster_ips, "service", key)
        if service is None:
            return
        self.services[key] = service
        end = math.inf if service.deleted is None else service.deleted
        self._hold(service.cluster_ips, Holding(-math.inf, end, "service", key))

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
        for ip in ips:
            self.by_ip.setdefault(ip, []).append(holding)

    def _release(self, ips: tuple[str, ...], kind: HolderKind, key: str) -> None:
        for ip in ips:
            holdings = [h for h in self.by_ip.get(ip, ()) if not (h.kind == kind and h.key == key)]
            if holdings:
                self.by_ip[ip] = holdings
            else:
                self.by_ip.pop(ip, None)

    # --- lookups ---------------------------------------------------------------

    def holder(self, ip: str, ts: float) -> Holding | None:
        """Who held ``ip`` at ``ts``, or None if nobody is known to."""
        holdings = self.by_ip.get(ip)
        if not holdings:
            return None
        best: Holding | None = None
        for h in holdings:  # strictly inside an interval: the latest start wins
            if h.start <= ts < h.end and (best is None or h.start > best.start):
                best = h
        if best is not None:
            return best
        for h in holdings:  # a pod terminating, within its grace period
            terminating = h.kind == "pod" and h.end <= ts < h.end + self.deletion_grace
            if terminating and (best is None or h.end > best.end):
                best = h
        if best is not None:
            return best
        for h in holdings:  # created a moment after the event, by another clock
            if h.start - self.clock_skew <= ts < h.start and (best is None or h.start < best.start):
                best = h
        return best

    def pod(self, uid: str) -> PodIdentity | None:
        return self.pods.get(uid)

    def pod_named(self, namespace: str, name: str) -> PodIdentity | None:
        uid = self._pod_by_name.get((namespace, name))
        return None if uid is None else self.pods.get(uid)

    def service(self, namespace: str, name: str) -> ServiceIdentity | None:
        return self.services.get(f"{namespace}/{name}")

    def __len__(self) -> int:
        return len(self.pods) + len(self.services) + len(self.nodes)


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
