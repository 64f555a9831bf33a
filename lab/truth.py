"""Ground truth: the edges a correct pipeline reports for a topology.

Pure, and derived from the plan only, so nobody writes the expected edges by
hand. Resolution follows callmap's rules (DESIGN.md, "Names"):

- a ClusterIP or headless service name: one edge per workload behind it that
  has a live pod (server ``ns/workload``); a ClusterIP service with no live
  pod behind it still answers DNS, and the answer is an edge to the service
  itself (``service:ns/name``), as the pipeline reports a service that names
  no workload (its connections are refused);
- a headless per-pod name or a ``*.pod`` name: that pod's workload;
- an ExternalName service: ``external:<its target>``; any other name outside
  the cluster domain: ``external:<name>``;
- an IP literal: whoever holds it at the time (a pod's workload, a service's
  workloads, ``node:<name>`` for a node address), else ``ip:<address>``;
- a host-network pod acts as its node (``node:<name>``), as client too;
- a long-lived call opened before capture to an external name is seen only
  by its socket, without the DNS answer: ``ip:<address>``.

Time: churn splits the run into phases (before the first churn step, between
steps, after the last); a call contributes the edges of every phase in which
a client pod lives, resolved against the pods live in that phase, so the new
holder of a reused IP is credited only after the reuse. Self-edges are kept.

Ports: each edge carries the ports its calls reach the server on, each a
:class:`ServerPort` with its transport (a ``protocol: udp`` call's port is
UDP: the edge's ``udp_ports``, never its ``ports``).

``tolerated`` edges may appear without being required: a client's DNS queries
over TCP are short connections to ``kube-system/coredns`` (53/tcp) that a
socket scan may or may not catch; a pre-capture call to an external name with
several addresses may be seen as any one of them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.addressing import DNS_PORT, Plan, PodPlan
from lab.dnszone import Zone, build_zone, first_match
from lab.errors import TopologyError
from lab.topologyrecords import DNS_NAMESPACE, DNS_WORKLOAD, Call, Transport

INTERNET = "internet"
"""The key of :func:`listen_ports` for the "internet" namespace."""


@dataclass(frozen=True, slots=True, order=True)
class ExpectedEdge:
    client: str
    """``ns/workload``, or ``node:<name>`` for a host-network client."""
    server: str
    """``ns/workload``, ``external:<dns name>``, ``ip:<address>``, ``node:<name>`` or
    ``service:ns/name``."""

    def as_json(self) -> dict[str, str]:
        return {"client": self.client, "server": self.server}

    def __str__(self) -> str:
        return f"{self.client} -> {self.server}"


@dataclass(frozen=True, slots=True, order=True)
class ServerPort:
    """A port a server is called on, with its transport: an edge's ``ports`` hold the TCP
    ones, its ``udp_ports`` the UDP ones, and one is never the other."""

    port: int
    protocol: Transport = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


PortMap = Mapping[ExpectedEdge, frozenset[ServerPort]]


def port_lists(ports: frozenset[ServerPort]) -> dict[str, list[int]]:
    """``{"ports": [TCP ...], "udp_ports": [UDP ...]}``, as an edge carries them."""
    return {
        "ports": sorted(p.port for p in ports if p.protocol == "tcp"),
        "udp_ports": sorted(p.port for p in ports if p.protocol == "udp"),
    }


@dataclass(frozen=True, slots=True)
class Truth:
    edges: frozenset[ExpectedEdge]
    """Every one of these must be reported."""
    tolerated: frozenset[ExpectedEdge]
    """These may be reported too; anything else is wrong."""
    ports: PortMap | None = None
    """The ports each true edge is called on (None: this truth knows no ports)."""
    allowed_ports: PortMap = field(default_factory=dict)
    """The ports each true or tolerated edge may show."""

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        """``edges`` and ``tolerated`` as ``lab run`` reports edges; ``ports``, when known,
        as its ``ports.expected``: each true edge's TCP ``ports`` and ``udp_ports``."""
        document: dict[str, list[dict[str, Any]]] = {
            "edges": [dict(e.as_json()) for e in sorted(self.edges)],
            "tolerated": [dict(e.as_json()) for e in sorted(self.tolerated)],
        }
        if self.ports is not None:
            document["ports"] = [
                {**e.as_json(), **port_lists(self.ports.get(e, frozenset()))}
                for e in sorted(self.edges)
            ]
        return document


@dataclass(frozen=True, slots=True)
class Hit:
    """One server a call reaches in one phase."""

    server: str
    workload: str | None = None
    """The ``ns/workload`` whose pods accept the connection; None for the internet."""
    internet: bool = False
    refused: bool = False
    """The name resolves but nobody accepts (a service with no live pod)."""


@dataclass(frozen=True, slots=True)
class Phase:
    index: int
    pods: tuple[PodPlan, ...]
    zone: Zone


def phases(plan: Plan) -> list[Phase]:
    """The churn phases that last a while (two steps at the same second leave no gap)."""
    times = [0.0, *(step.at for step in plan.churn)]
    result = []
    for index, start in enumerate(times):
        end = times[index + 1] if index + 1 < len(times) else float("inf")
        if end > start:
            pods = plan.pods_in_phase(index)
            result.append(Phase(index, pods, build_zone(plan, pods)))
    return result


def prefixed(name: str, cluster: str) -> str:
    """An endpoint's name in one cluster as a multi-cluster map names it: ``east/ns/w``,
    ``node:east/node-a``, ``service:east/ns/s``, ``apiserver:east``; externals and
    bare addresses (``external:NAME``, ``ip:ADDRESS``) belong to no cluster."""
    if name.startswith(("external:", "ip:")):
        return name
    kind, colon, rest = name.partition(":")
    if colon:
        return f"{kind}:{cluster}/{rest}"
    if name == "apiserver":
        return f"apiserver:{cluster}"
    return f"{cluster}/{name}"


def client_of(pod: PodPlan) -> str:
    return f"node:{pod.node}" if pod.host_network else pod.ref


def resolve(plan: Plan, phase: Phase, call: Call, namespace: str) -> tuple[Hit, ...]:
    """Where ``call``, made from a pod in ``namespace``, lands during ``phase``."""
    try:
        address = ipaddress.ip_address(call.to)
    except ValueError:
        return _resolve_name(plan, phase, call, namespace)
    return _resolve_address(plan, phase, str(address))


def _resolve_name(plan: Plan, phase: Phase, call: Call, namespace: str) -> tuple[Hit, ...]:
    domain = plan.topology.domain
    name = first_match(phase.zone, call.to, namespace)
    if name is None:
        return ()
    svc_suffix, pod_suffix = f".svc.{domain}", f".pod.{domain}"
    if name.endswith(svc_suffix):
        labels = name[: -len(svc_suffix)].split(".")
        if len(labels) == 2:
            service = plan.service(labels[1], labels[0])
            if service is None:
                return ()
            if service.external_name:
                return _external(plan, service.external_name, call, phase)
            live = {p.ref for p in phase.pods}
            hits = tuple(Hit(w, w) for w in service.workloads if w in live)
            return hits or (Hit(f"service:{service.key}", refused=True),)
        if len(labels) == 3:
            host, subdomain, ns = labels
            return tuple(
                Hit(p.ref, p.ref)
                for p in phase.pods
                if (p.hostname, p.subdomain, p.namespace) == (host, subdomain, ns)
            )
        return ()
    if name.endswith(pod_suffix):
        ip = name[: -len(pod_suffix)].split(".")[0].replace("-", ".")
        return _resolve_address(plan, phase, ip)
    return _external(plan, name, call, phase)


def _external(plan: Plan, name: str, call: Call, phase: Phase) -> tuple[Hit, ...]:
    if call.before_capture and phase.index == 0:
        ips = _usable(phase.zone.lookup(name) or (), call.family)
        return tuple(Hit(f"ip:{ip}", internet=True) for ip in ips)
    return (Hit(f"external:{name}", internet=True),)


def _usable(ips: tuple[str, ...], family: str) -> tuple[str, ...]:
    if family == "any":
        return ips
    return tuple(ip for ip in ips if str(ipaddress.ip_address(ip).version) == family)


def _resolve_address(plan: Plan, phase: Phase, ip: str) -> tuple[Hit, ...]:
    for node in plan.nodes:
        if ip in node.ips:
            return (Hit(f"node:{node.name}"),)
    for pod in phase.pods:
        if ip in pod.ips and not pod.host_network:
            return (Hit(pod.ref, pod.ref),)
    for service in plan.services:
        if ip in service.cluster_ips:
            live = {p.ref for p in phase.pods}
            return tuple(Hit(w, w) for w in service.workloads if w in live)
    if ip in plan.internet_ips:
        return (Hit(f"ip:{ip}", internet=True),)
    return ()


def _clients(phase: Phase, call: Call) -> list[PodPlan]:
    """The pods making ``call``: none for a call to another cluster (the global truth's)."""
    if call.cross_cluster:
        return []
    return [p for p in phase.pods if p.ref == call.client]


def expected_edges(plan: Plan) -> Truth:
    """The true edge set; raises TopologyError for a call that reaches nothing, ever."""
    edges: set[ExpectedEdge] = set()
    tolerated: set[ExpectedEdge] = set()
    ports: dict[ExpectedEdge, set[ServerPort]] = defaultdict(set)
    allowed: dict[ExpectedEdge, set[ServerPort]] = defaultdict(set)
    dns = f"{DNS_NAMESPACE}/{DNS_WORKLOAD}"
    reached = [False] * len(plan.topology.calls)
    for phase in phases(plan):
        for i, call in enumerate(plan.topology.calls):
            port = ServerPort(call.port, call.protocol)
            for pod in _clients(phase, call):
                hits = resolve(plan, phase, call, pod.namespace)
                reached[i] = reached[i] or any(not hit.refused for hit in hits)
                # the socket of a pre-capture call shows one of several, which one is chance
                chance = call.before_capture and phase.index == 0 and len(hits) > 1
                for hit in hits:
                    edge = ExpectedEdge(client_of(pod), hit.server)
                    (tolerated if chance else edges).add(edge)
                    allowed[edge].add(port)
                    if not chance:
                        ports[edge].add(port)
                if not _is_address(call.to):
                    tolerated.add(ExpectedEdge(client_of(pod), dns))
                    allowed[ExpectedEdge(client_of(pod), dns)].add(ServerPort(DNS_PORT))
    for i, call in enumerate(plan.topology.calls):
        if not reached[i] and not call.cross_cluster:
            raise TopologyError(
                f"calls[{i}].to: {call.to!r} (from {call.client}) reaches nothing in the lab"
            )
    return Truth(
        frozenset(edges),
        frozenset(tolerated - edges),
        {edge: frozenset(found) for edge, found in ports.items()},
        {edge: frozenset(found) for edge, found in allowed.items()},
    )


def listen_ports(plan: Plan, protocol: Transport = "tcp") -> dict[str, set[int]]:
    """Ports to listen on over ``protocol``: per ``ns/workload``, and for :data:`INTERNET`.

    A workload listens on its own ``ports`` (TCP), the ports of the services in
    front of it and every port a call reaches it on; the internet on its
    externals' ports and the ports of calls that leave the cluster.
    """
    ports: dict[str, set[int]] = defaultdict(set)
    tcp = protocol == "tcp"
    for ref, workload in plan.by_workload.items():
        ports[ref].update(workload.ports if tcp else ())
    for service in plan.services:
        for workload_ref in service.workloads:
            ports[workload_ref].update(
                p.port for p in service.ports if p.protocol.lower() == protocol
            )
    for external in plan.topology.externals:
        ports[INTERNET].update(external.ports if tcp else external.udp_ports)
    for phase in phases(plan):
        for call in plan.topology.calls:
            if call.protocol != protocol:
                continue
            for pod in _clients(phase, call):
                for hit in resolve(plan, phase, call, pod.namespace):
                    if hit.internet:
                        ports[INTERNET].add(call.port)
                    elif hit.workload is not None:
                        ports[hit.workload].add(call.port)
    return dict(ports)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
