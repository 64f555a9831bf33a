"""The deterministic plan of a topology: every pod, address, name and namespace.

:func:`plan` is pure: the same topology always gives the same pods (names,
UIDs, nodes, IPs), service IPs and namespace names, including the pods that
churn will create later, so the truth, the inventory, the DNS zone and the
network commands are all derived from one plan and never disagree.

Addresses (ranges in :mod:`lab.ranges`): node ``i`` holds ``172.31.250.<10+i>``
and routes ``10.244.<i>.0/24`` (``fd00:244::<i>:0/112``) to its pods, numbered
from 2 in creation order; the lab's DNS server (``kube-system/coredns``) is the
first pod of the first node and sits behind ``kube-dns`` at ``10.96.0.10``
(``fd00:96::a``); other services get ``10.96.1.1`` on (``fd00:96::1:1`` on).
A host-network pod holds its node's addresses. A churn replacement takes
exactly the deleted pod's addresses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.errors import TopologyError
from lab.ranges import NODE_V4, NODE_V6, Network, Ranges
from lab.topologyrecords import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    DNS_WORKLOAD,
    Import,
    Topology,
    Workload,
)

DNS_PORT = 53
DNS_V4 = str(Ranges().service_v4.network_address + 10)
UPSTREAM_DNS = "198.51.100.53"
"""The upstream DNS server in the internet namespace, for ``dns_upstream`` labs."""
DNS_V6 = str(Ranges().service_v6.network_address + 10)
CLUSTERSET_DOMAIN = "clusterset.local"
_IMPORT_BASE = 200 * 256
"""Clusterset virtual IPs start at ``10.96.200.1`` (the cluster's services never get there)."""
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names
_MAX_PODS_PER_NODE = 250


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    index: int
    ipv4: str
    ipv6: str
    netns: str
    pod_cidr_v4: str
    pod_cidr_v6: str
    uplink: str
    """The fabric's end of this node's link (the node's end is ``eth0``)."""

    @property
    def ips(self) -> tuple[str, ...]:
        return (self.ipv4, self.ipv6)


@dataclass(frozen=True, slots=True)
class PodPlan:
    uid: str
    namespace: str
    name: str
    kind: str
    workload: str
    """The workload's name (the root owner); ``ref`` is ``namespace/workload``."""
    node: str
    ips: tuple[str, ...]
    host_network: bool
    labels: Mapping[str, str]
    netns: str
    """Where its processes run: its own namespace, or its node's for host network."""
    veth: str | None
    """The node's end of its veth pair (``None`` for host network)."""
    hostname: str | None = None
    """Set for StatefulSet pods behind a headless service: ``<hostname>.<subdomain>``."""
    subdomain: str | None = None
    dns_tcp: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.workload}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PortPlan:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ServicePlan:
    namespace: str
    name: str
    type: str
    """``ClusterIP``, ``Headless`` or ``ExternalName``."""
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[PortPlan, ...] = ()
    workloads: tuple[str, ...] = ()
    """``ns/workload`` refs of the workloads behind it."""
    external_name: str | None = None
    exported: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """A clusterset service as one cluster sees it: its name, virtual IP and backends."""

    service: Import
    ip: str

    @property
    def name(self) -> str:
        return f"{self.service.name}.{self.service.namespace}.svc.{CLUSTERSET_DOMAIN}"


@dataclass(frozen=True, slots=True)
class ChurnStep:
    at: float
    victim: PodPlan
    replacement: PodPlan | None
    pending_for: float = 0.0
    """The replacement exists this long before ``at``, Pending: no IP, no process."""


@dataclass(frozen=True, slots=True)
class Plan:
    topology: Topology
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    """The pods at start, the DNS server's first."""
    services: tuple[ServicePlan, ...]
    churn: tuple[ChurnStep, ...]
    internet_ips: tuple[str, ...]
    """Addresses of the "internet" namespace: externals and called addresses outside the lab."""
    fabric_netns: str
    internet_netns: str
    dns_ips: tuple[str, ...] = (DNS_V4,)
    by_workload: Mapping[str, Workload] = field(default_factory=dict)
    upstream_dns: str | None = None
    """Where the cluster DNS forwards names outside its domain; None: it answers them itself."""
    ranges: Ranges = field(default_factory=Ranges)
    imports: tuple[ImportPlan, ...] = ()

    def pods_in_phase(self, phase: int) -> tuple[PodPlan, ...]:
        """Live pods after the first ``phase`` churn steps."""
        gone = {step.victim.key for step in self.churn[:phase]}
        added = [s.replacement for s in self.churn[:phase] if s.replacement is not None]
        return tuple(p for p in (*self.pods, *added) if p.key not in gone)

    @property
    def all_pods(self) -> tuple[PodPlan, ...]:
        """Every pod that ever lives, churn replacements included."""
        return self.pods + tuple(s.replacement for s in self.churn if s.replacement)

    def node(self, name: str) -> NodePlan:
        return next(n for n in self.nodes if n.name == name)

    def service(self, namespace: str, name: str) -> ServicePlan | None:
        return next((s for s in self.services if (s.namespace, s.name) == (namespace, name)), None)


def plan(topology: Topology) -> Plan:
    """Lay out ``topology``: deterministic names and addresses for everything."""
    prefix = topology.prefix
    ranges = Ranges(topology.slot)
    nodes = tuple(_node(topology, ranges, i, name) for i, name in enumerate(topology.nodes))
    dns_workload = Workload(
        namespace=DNS_NAMESPACE,
        name=DNS_WORKLOAD,
        labels={"k8s-app": DNS_SERVICE},
        node=topology.nodes[0],
    )
    workloads = (dns_workload, *topology.workloads)
    allocator = _Allocator(topology, nodes)
    subdomains = _subdomains(topology)
    pods: list[PodPlan] = []
    for workload in workloads:
        count = len(nodes) if workload.kind == "DaemonSet" else workload.replicas
        for ordinal in range(count):
            node = nodes[ordinal] if workload.kind == "DaemonSet" else allocator.place(workload)
            pods.append(allocator.pod(workload, ordinal, node, subdomains.get(workload.ref)))
    churn: list[ChurnStep] = []
    live = list(pods)
    for i, event in enumerate(topology.churn):
        victim = _victim(live, event.delete, event.pod, f"churn[{i}]")
        live.remove(victim)
        replacement = None
        if event.ip_to is not None:
            workload = topology.workload(event.ip_to)
            ordinal = 1 + max(
                (_ordinal(p) for p in allocator.made if p.ref == event.ip_to), default=-1
            )
            node = nodes[topology.nodes.index(victim.node)]
            replacement = allocator.pod(
                workload, ordinal, node, subdomains.get(workload.ref), ips=victim.ips
            )
            live.append(replacement)
        churn.append(ChurnStep(event.at, victim, replacement, event.pending_for))
    dual = topology.dual_stack
    dns_v4 = str(ranges.service_v4.network_address + 10)
    dns_v6 = str(ranges.service_v6.network_address + 10)
    return Plan(
        topology=topology,
        nodes=nodes,
        pods=tuple(pods),
        services=_services(topology, ranges, dual),
        churn=tuple(churn),
        internet_ips=_internet_ips(topology, ranges),
        fabric_netns=f"{prefix}fabric",
        internet_netns=f"{prefix}internet",
        dns_ips=(dns_v4, dns_v6) if dual else (dns_v4,),
        by_workload={w.ref: w for w in workloads},
        upstream_dns=UPSTREAM_DNS if topology.dns_upstream else None,
        ranges=ranges,
        imports=tuple(
            ImportPlan(i, str(ranges.service_v4.network_address + _IMPORT_BASE + 1 + n))
            for n, i in enumerate(topology.imports)
        ),
    )


def _node(topology: Topology, ranges: Ranges, index: int, name: str) -> NodePlan:
    return NodePlan(
        name=name,
        index=index,
        ipv4=str(NODE_V4.network_address + 10 + index),
        ipv6=str(NODE_V6.network_address + 10 + index),
        netns=f"{topology.prefix}node-{name}",
        pod_cidr_v4=str(
            ipaddress.ip_network((int(ranges.pod_v4.network_address) + (index << 8), 24))
        ),
        pod_cidr_v6=str(
            ipaddress.ip_network((int(ranges.pod_v6.network_address) + (index << 16), 112))
        ),
        uplink=f"n{index}",
    )


class _Allocator:
    """Hands out pod addresses per node and spreads unpinned pods round-robin."""

    def __init__(self, topology: Topology, nodes: tuple[NodePlan, ...]) -> None:
        self.topology = topology
        self.nodes = nodes
        self.next_host = [2] * len(nodes)
        self.turn = 0
        self.seq = 0
        self.made: list[PodPlan] = []

    def place(self, workload: Workload) -> NodePlan:
        if workload.node is not None:
            return next(n for n in self.nodes if n.name == workload.node)
        node = self.nodes[self.turn % len(self.nodes)]
        self.turn += 1
        return node

    def pod(
        self,
        workload: Workload,
        ordinal: int,
        node: NodePlan,
        subdomain: str | None,
        ips: tuple[str, ...] | None = None,
    ) -> PodPlan:
        name = _pod_name(self.topology.name, workload, ordinal, node.name)
        if workload.host_network:
            ips, netns, veth = node.ips, node.netns, None
        else:
            if ips is None:
                ips = self._addresses(node)
            netns, veth = f"{self.topology.prefix}pod-{workload.namespace}.{name}", f"p{self.seq}"
        self.seq += 1
        is_member = workload.kind == "StatefulSet" and subdomain is not None
        pod = PodPlan(
            uid=str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL,
                    f"callmap-lab:{self.topology.name}/{workload.namespace}/{name}",
                )
            ),
            namespace=workload.namespace,
            name=name,
            kind=workload.kind,
            workload=workload.name,
            node=node.name,
            ips=ips,
            host_network=workload.host_network,
            labels=dict(workload.labels),
            netns=netns,
            veth=veth,
            hostname=name if is_member else None,
            subdomain=subdomain if is_member else None,
            dns_tcp=workload.dns_tcp,
        )
        self.made.append(pod)
        return pod

    def _addresses(self, node: NodePlan) -> tuple[str, ...]:
        host = self.next_host[node.index]
        if host > _MAX_PODS_PER_NODE:
            raise TopologyError(f"node {node.name!r}: more than {_MAX_PODS_PER_NODE - 1} pods")
        self.next_host[node.index] += 1
        v4 = str(ipaddress.ip_network(node.pod_cidr_v4).network_address + host)
        if not self.topology.dual_stack:
            return (v4,)
        return (v4, str(ipaddress.ip_network(node.pod_cidr_v6).network_address + host))


def _pod_name(lab: str, workload: Workload, ordinal: int, node: str) -> str:
    """Names shaped like the controllers' (``web-7c5ddbdf54-x2v9q``, ``db-0``), but stable."""
    if workload.kind == "Pod":
        return workload.name
    if workload.kind == "StatefulSet":
        return f"{workload.name}-{ordinal}"
    seed = f"{lab}/{workload.namespace}/{workload.name}"
    own = name_suffix(f"{seed}/{ordinal}/{node}", 5)
    if workload.kind == "Deployment":
        return f"{workload.name}-{template_hash(lab, workload)}-{own}"
    if workload.kind == "CronJob":
        return f"{workload.name}-{28000000 + ordinal}-{own}"
    return f"{workload.name}-{own}"


def template_hash(lab: str, workload: Workload) -> str:
    """A Deployment's ``pod-template-hash``: its ReplicaSet is ``<name>-<hash>``."""
    return name_suffix(f"{lab}/{workload.namespace}/{workload.name}", 10)


def name_suffix(seed: str, length: int) -> str:
    """A stable stand-in for the random suffix Kubernetes gives generated names."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:length])


def _ordinal(pod: PodPlan) -> int:
    tail = pod.name.rsplit("-", 1)[-1]
    return int(tail) if pod.kind == "StatefulSet" and tail.isdigit() else 0


def _victim(live: list[PodPlan], ref: str, pod: str | None, where: str) -> PodPlan:
    candidates = [p for p in live if p.ref == ref and (pod is None or p.name == pod)]
    if not candidates:
        what = f"pod {pod!r} of {ref!r}" if pod else f"a live pod of {ref!r}"
        raise TopologyError(f"{where}.delete: there is no {what} left to delete")
    return candidates[-1]


def _subdomains(topology: Topology) -> dict[str, str]:
    """Workload -> the headless service that gives its pods per-pod DNS names."""
    result: dict[str, str] = {}
    for workload in topology.workloads:
        if workload.service is not None and workload.service.headless:
            result[workload.ref] = workload.service.name
    for service in topology.services:
        if service.headless:
            for ref in service.selects:
                result.setdefault(ref, service.name)
    return result


def _services(topology: Topology, ranges: Ranges, dual: bool) -> tuple[ServicePlan, ...]:
    service_v4, service_v6 = ranges.service_v4, ranges.service_v6
    dns_v4 = str(service_v4.network_address + 10)
    dns_v6 = str(service_v6.network_address + 10)
    dns = ServicePlan(
        namespace=DNS_NAMESPACE,
        name=DNS_SERVICE,
        type="ClusterIP",
        cluster_ips=(dns_v4, dns_v6) if dual else (dns_v4,),
        ports=(PortPlan(DNS_PORT, "UDP", "dns"), PortPlan(DNS_PORT, "TCP", "dns-tcp")),
        workloads=(f"{DNS_NAMESPACE}/{DNS_WORKLOAD}",),
    )
    specs: list[tuple[str, str, tuple[PortPlan, ...], bool, tuple[str, ...], str | None, bool]]
    specs = [
        (
            w.namespace,
            w.service.name,
            _port_plans(w.service.ports, w.service.udp_ports),
            w.service.headless,
            (w.ref,),
            None,
            w.service.export,
        )
        for w in topology.workloads
        if w.service is not None
    ]
    specs += [
        (
            s.namespace,
            s.name,
            _port_plans(s.ports, s.udp_ports),
            s.headless,
            s.selects,
            s.external_name,
            s.export,
        )
        for s in topology.services
    ]
    result = [dns]
    index = 0
    for namespace, name, ports, headless, workloads, external, exported in specs:
        ips: tuple[str, ...] = ()
        kind = "ExternalName" if external else "Headless" if headless else "ClusterIP"
        if kind == "ClusterIP":
            index += 1
            v4 = service_v4.network_address + 256 * (1 + (index - 1) // 250) + 1 + (index - 1) % 250
            v6 = service_v6.network_address + 0x10000 + index
            ips = (str(v4), str(v6)) if dual else (str(v4),)
        result.append(
            ServicePlan(
                namespace=namespace,
                name=name,
                type=kind,
                cluster_ips=ips,
                ports=ports,
                workloads=() if external else workloads,
                external_name=external,
                exported=exported,
            )
        )
    return tuple(result)


def _port_plans(tcp: Iterable[int], udp: Iterable[int]) -> tuple[PortPlan, ...]:
    """A Service's ports as Kubernetes lists them: TCP, then UDP, each named for both."""
    return tuple(PortPlan(p, "TCP", f"tcp-{p}") for p in tcp) + tuple(
        PortPlan(p, "UDP", f"udp-{p}") for p in udp
    )


def _internet_ips(topology: Topology, ranges: Ranges) -> tuple[str, ...]:
    addresses: list[str] = [ip for external in topology.externals for ip in external.ips]
    owned = (*ranges.owned, *(ipaddress.ip_network(r) for r in topology.peer_ranges))
    addresses += [str(a) for a in _literal_addresses((c.to for c in topology.calls), owned)]
    if topology.dns_upstream:
        addresses.append(UPSTREAM_DNS)
    return tuple(dict.fromkeys(addresses))


def _literal_addresses(
    targets: Iterable[str], owned: Iterable[Network]
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Call targets that are IP addresses outside the ``owned`` ranges."""
    owned = tuple(owned)
    result = []
    for target in targets:
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            continue
        if not any(address in network for network in owned):
            result.append(address)
    return result
