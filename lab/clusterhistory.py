"""What the API server held during a cluster run, queryable at any time. Pure.

:mod:`lab.clusterrecord` writes every version of the Pods, Services,
ReplicaSets, Jobs and Nodes it lists and watches as an :class:`ApiEvent`
(the object, trimmed to what a truth needs, and the time the lab saw it);
:meth:`ApiHistory.from_events` turns them back into a time-versioned history
that answers the questions :mod:`lab.clustertruth` asks: which incarnation of
a pod name lived at ``t``, who held an address, which pods a Service selected,
whose workload a pod is by its owner chain. Like the truth, it imports no
truth, DNS zone, streams, watch or capture module.

Times are the recorder's (when an event reached it), not the API server's:
the same clock as the callers' logs on this machine. An address is held from
the version that first shows it until the version that no longer does (a pod
that finished, ``Succeeded`` or ``Failed``, holds none) or the pod's deletion.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

HOLD_SLACK = 5.0
"""Seconds by which an address's holding may miss a call (kubelet status lag)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApiEvent:
    """One version of an object the API server held, as recorded at ``t``."""

    t: float
    kind: str
    """``Pod``, ``Service``, ``ReplicaSet``, ``Job`` or ``Node``."""
    event: str
    """``ADDED``, ``MODIFIED`` or ``DELETED``."""
    object: Mapping[str, Any]


def parse_api_line(line: str) -> ApiEvent:
    """One line of the API record; ValueError when it is not one."""
    try:
        raw = json.loads(line)
        return ApiEvent(float(raw["t"]), str(raw["kind"]), str(raw["event"]), dict(raw["object"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an API record line: {line[:120]!r} ({exc})") from None


# --- what the API server held -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class PodState:
    uid: str
    namespace: str
    name: str
    node: str | None
    host_network: bool
    ips: tuple[str, ...]
    labels: Mapping[str, str]
    owner: Owner | None
    hostname: str | None = None
    subdomain: str | None = None
    terminating: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServiceState:
    uid: str
    namespace: str
    name: str
    type: str
    """``ClusterIP``, ``Headless``, ``ExternalName``, ``NodePort`` or ``LoadBalancer``."""
    cluster_ips: tuple[str, ...]
    selector: Mapping[str, str] | None
    external_name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ControllerState:
    kind: str
    uid: str
    namespace: str
    name: str
    owner: Owner | None


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    ips: tuple[str, ...]


def _owner(metadata: Mapping[str, Any]) -> Owner | None:
    refs = metadata.get("ownerReferences") or []
    chosen = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if chosen is None:
        return None
    return Owner(str(chosen["kind"]), str(chosen["name"]), str(chosen.get("uid", "")))


def pod_state(obj: Mapping[str, Any]) -> PodState:
    metadata, spec = obj["metadata"], obj.get("spec") or {}
    status = obj.get("status") or {}
    ips = tuple(str(i["ip"]) for i in status.get("podIPs") or [] if i.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    if status.get("phase") in ("Succeeded", "Failed"):
        ips = ()  # a finished pod's address is free again
    return PodState(
        uid=str(metadata["uid"]),
        namespace=str(metadata["namespace"]),
        name=str(metadata["name"]),
        node=spec.get("nodeName"),
        host_network=bool(spec.get("hostNetwork")),
        ips=ips,
        labels=dict(metadata.get("labels") or {}),
        owner=_owner(metadata),
        hostname=spec.get("hostname"),
        subdomain=spec.get("subdomain"),
        terminating=metadata.get("deletionTimestamp") is not None,
    )


def service_state(obj: Mapping[str, Any]) -> ServiceState:
    metadata, spec = obj["metadata"], obj.get("spec") or {}
    kind = str(spec.get("type") or "ClusterIP")
    ips = tuple(str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip)
    if kind == "ClusterIP" and (not ips or ips[0] == "None"):
        kind, ips = "Headless", ()
    selector = spec.get("selector")
    return ServiceState(
        uid=str(metadata["uid"]),
        namespace=str(metadata["namespace"]),
        name=str(metadata["name"]),
        type=kind,
        cluster_ips=ips,
        selector=dict(selector) if selector else None,
        external_name=spec.get("externalName"),
    )


def controller_state(kind: str, obj: Mapping[str, Any]) -> ControllerState:
    metadata = obj["metadata"]
    return ControllerState(
        kind,
        str(metadata["uid"]),
        str(metadata["namespace"]),
        str(metadata["name"]),
        _owner(metadata),
    )


def node_state(obj: Mapping[str, Any]) -> NodeState:
    addresses = (obj.get("status") or {}).get("addresses") or []
    ips = tuple(
        str(a["address"]) for a in addresses if a.get("type") in ("InternalIP", "ExternalIP")
    )
    return NodeState(str(obj["metadata"]["name"]), ips)


@dataclass(slots=True)
class Timeline(Generic[T]):
    """Versions of one object over time; None after its deletion."""

    versions: list[tuple[float, T | None]] = field(default_factory=list)

    def add(self, t: float, state: T | None) -> None:
        self.versions.append((t, state))

    def at(self, t: float) -> T | None:
        current: T | None = None
        for since, state in self.versions:
            if since > t:
                break
            current = state
        return current

    def spans(self) -> Iterable[tuple[float, float, T]]:
        """``(from, until, state)`` for every version that existed."""
        for i, (since, state) in enumerate(self.versions):
            if state is not None:
                until = self.versions[i + 1][0] if i + 1 < len(self.versions) else float("inf")
                yield since, until, state


@dataclass(slots=True)
class ApiHistory:
    """Everything the API server held during a run, queryable at any time."""

    pods: dict[str, Timeline[PodState]] = field(default_factory=dict)
    services: dict[str, Timeline[ServiceState]] = field(default_factory=dict)
    controllers: dict[str, ControllerState] = field(default_factory=dict)
    nodes: dict[str, Timeline[NodeState]] = field(default_factory=dict)
    skipped: int = 0
    """Events that could not be read (missing fields)."""

    @classmethod
    def from_events(cls, events: Iterable[ApiEvent]) -> ApiHistory:
        history = cls()
        for event in sorted(events, key=lambda e: e.t):
            try:
                history._apply(event)
            except (KeyError, TypeError, ValueError):
                history.skipped += 1
        return history

    def _apply(self, event: ApiEvent) -> None:
        gone = event.event == "DELETED"
        obj = event.object
        if event.kind == "Pod":
            pod = pod_state(obj)
            self.pods.setdefault(pod.uid, Timeline()).add(event.t, None if gone else pod)
        elif event.kind == "Service":
            service = service_state(obj)
            timeline = self.services.setdefault(service.uid, Timeline())
            timeline.add(event.t, None if gone else service)
        elif event.kind in ("ReplicaSet", "Job"):
            controller = controller_state(event.kind, obj)
            self.controllers[controller.uid] = controller  # owners do not change: keep the last
        elif event.kind == "Node":
            node = node_state(obj)
            self.nodes.setdefault(node.name, Timeline()).add(event.t, None if gone else node)

    # -- queries --

    def pod_named(self, key: str, t: float) -> PodState | None:
        """The incarnation of pod ``ns/name`` alive at ``t`` (else the one nearest in time)."""
        best: tuple[float, PodState] | None = None
        for timeline in self.pods.values():
            for start, end, state in timeline.spans():
                if state.key != key:
                    continue
                distance = 0.0 if start <= t < end else min(abs(t - start), abs(t - end))
                if best is None or distance < best[0]:
                    best = (distance, state)
        return None if best is None else best[1]

    def holder(self, address: str, t: float, slack: float = HOLD_SLACK) -> PodState | None:
        """The pod (not host-network) that held ``address`` at ``t``, give or take ``slack``."""
        best: tuple[float, PodState] | None = None
        for timeline in self.pods.values():
            for start, end, state in timeline.spans():
                if state.host_network or address not in state.ips:
                    continue
                distance = 0.0 if start <= t < end else min(abs(t - start), abs(t - end))
                if distance <= slack and (best is None or distance < best[0]):
                    best = (distance, state)
        return None if best is None else best[1]

    def service_named(self, namespace: str, name: str, t: float) -> ServiceState | None:
        for timeline in self.services.values():
            state = timeline.at(t)
            if state is not None and (state.namespace, state.name) == (namespace, name):
                return state
        return None

    def service_with_ip(self, address: str, t: float) -> ServiceState | None:
        for timeline in self.services.values():
            state = timeline.at(t)
            if state is not None and address in state.cluster_ips:
                return state
        return None

    def node_with_ip(self, address: str, t: float) -> str | None:
        for name, timeline in self.nodes.items():
            state = timeline.at(t)
            if state is not None and address in state.ips:
                return name
        return None

    def selected(self, service: ServiceState, t: float) -> list[PodState]:
        """The pods ``service`` selected at ``t``: running, addressed, not terminating."""
        return self.selected_during(service, t, t)

    def selected_during(self, service: ServiceState, start: float, end: float) -> list[PodState]:
        """The pods ``service`` selected at some time from ``start`` to ``end``."""
        if not service.selector:
            return []
        result = []
        for timeline in self.pods.values():
            for since, until, pod in timeline.spans():
                if since <= end and until > start and _selects(service, pod):
                    result.append(pod)
                    break
        return result

    def ever_selected(self, service: ServiceState) -> list[PodState]:
        if not service.selector:
            return []
        return [
            state
            for timeline in self.pods.values()
            for _start, _end, state in timeline.spans()
            if state.namespace == service.namespace
            and all(state.labels.get(k) == v for k, v in service.selector.items())
        ]

    def per_pod_name(self, host: str, subdomain: str, namespace: str, t: float) -> bool:
        """Whether ``<host>.<subdomain>.<namespace>.svc`` names a pod at ``t``."""
        return any(
            pod is not None
            and (pod.hostname, pod.subdomain, pod.namespace) == (host, subdomain, namespace)
            for pod in (timeline.at(t) for timeline in self.pods.values())
        )

    def workload(self, pod: PodState) -> tuple[str, str | None]:
        """``ns/workload`` (``node:<name>`` for host network), and a note when the owner
        chain breaks off in the record."""
        if pod.host_network:
            return f"node:{pod.node}", None
        owner = pod.owner
        if owner is None:
            return f"{pod.namespace}/{pod.name}", None
        if owner.kind not in ("ReplicaSet", "Job"):
            return f"{pod.namespace}/{owner.name}", None
        controller = self.controllers.get(owner.uid)
        if controller is None:
            note = (
                f"{owner.kind} {pod.namespace}/{owner.name} of pod {pod.key} is not in the record"
            )
            return f"{pod.namespace}/{owner.name}", note
        top = controller.owner
        if top is not None and top.kind in ("Deployment", "CronJob"):
            return f"{pod.namespace}/{top.name}", None
        return f"{pod.namespace}/{controller.name}", None


def is_ip(text: str) -> bool:
    """True if ``text`` is an IPv4 or IPv6 address (a call to an address, not a name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _selects(service: ServiceState, pod: PodState) -> bool:
    """Whether ``service`` sends traffic to ``pod`` in this state."""
    return (
        pod.namespace == service.namespace
        and bool(pod.ips)
        and not pod.terminating
        and all(pod.labels.get(k) == v for k, v in (service.selector or {}).items())
    )
