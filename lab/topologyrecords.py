"""The frozen records a topology file parses into (:mod:`lab.topology` reads them).

A :class:`Topology` holds workloads, services, externals, calls and churn as
the file says them, validated: the plan (:mod:`lab.addressing`), the truth
and the network are derived from it and never read the file again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"]
Family = Literal["any", "4", "6"]
Transport = Literal["tcp", "udp"]
TRANSPORTS: tuple[Transport, ...] = ("tcp", "udp")
KINDS: tuple[Kind, ...] = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")

# The lab's own DNS server: a real workload behind the kube-dns service.
DNS_NAMESPACE, DNS_WORKLOAD, DNS_SERVICE = "kube-system", "coredns", "kube-dns"


@dataclass(frozen=True, slots=True)
class WorkloadService:
    """A service that selects exactly one workload (``workloads[].service``)."""

    name: str
    ports: tuple[int, ...]
    """TCP ports (the topology key ``ports``)."""
    headless: bool = False
    export: bool = False
    """A ServiceExport exists for it (multi-cluster labs: served under clusterset.local)."""
    udp_ports: tuple[int, ...] = ()
    """UDP ports: the pods answer datagrams on them, the Service translates them."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A controller and its pods."""

    namespace: str
    name: str
    kind: Kind = "Deployment"
    replicas: int = 1
    """Pods at start; a DaemonSet has one per node whatever this says."""
    labels: Mapping[str, str] = field(default_factory=dict)
    service: WorkloadService | None = None
    host_network: bool = False
    """The pods share their node's network namespace and addresses."""
    node: str | None = None
    """Pin every pod to this node; default: pods are spread over the nodes."""
    ports: tuple[int, ...] = ()
    """Extra ports the pods listen on (service ports and called ports are added)."""
    dns_tcp: bool = False
    """The pods' resolv.conf says ``options use-vc``: every DNS query goes over TCP."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Service:
    """A service not tied to one workload: selecting several, or an ExternalName."""

    namespace: str
    name: str
    ports: tuple[int, ...] = ()
    selects: tuple[str, ...] = ()
    """Workloads behind it, as ``ns/name`` (a bare name means the service's namespace)."""
    headless: bool = False
    external_name: str | None = None
    export: bool = False
    """A ServiceExport exists for it (multi-cluster labs: served under clusterset.local)."""
    udp_ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class External:
    """A name outside the cluster, served from the "internet" namespace."""

    name: str
    ips: tuple[str, ...]
    ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """One client workload calling one target, from every pod of the workload."""

    client: str
    """``ns/workload`` (the topology key is ``from``)."""
    to: str
    port: int
    rate: float = 1.0
    """Connections per second per client pod (long-lived: reconnects only when broken)."""
    long_lived: bool = False
    before_capture: bool = False
    """Opened when the lab comes up, before ``lab go`` releases the other calls."""
    family: Family = "any"
    """Which addresses to ask for and connect to: ``4``, ``6`` or ``any`` (both)."""
    cross_cluster: bool = False
    """In a multi-cluster lab: the target is in another cluster (a clusterset name or a
    peer's IP), so this cluster's truth leaves it to the global one (:mod:`lab.multitruth`)."""
    protocol: Transport = "tcp"
    """``udp``: one datagram sent, its answer awaited (never long-lived)."""


@dataclass(frozen=True, slots=True)
class Churn:
    """At ``at`` seconds, one pod of ``delete`` goes; ``ip_to`` gets a new pod with its IPs."""

    at: float
    delete: str
    ip_to: str | None = None
    pod: str | None = None
    """The pod to delete; default: the newest live pod of the workload."""
    pending_for: float = 0.0
    """The ``ip_to`` pod exists this long before ``at``, Pending, without an IP."""


@dataclass(frozen=True, slots=True)
class Import:
    """A clusterset service one cluster of a multi-cluster lab can call (MCS ServiceImport).

    Its name, ``<name>.<namespace>.svc.clusterset.local``, resolves to a virtual IP of
    the importing cluster, translated to the exporting clusters' pods (``backends``).
    """

    namespace: str
    name: str
    ports: tuple[int, ...]
    backends: tuple[tuple[str, str], ...]
    """(``cluster/ns/pod``, IP) of every pod behind the service in every exporting cluster."""


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    cluster: str
    domain: str
    nodes: tuple[str, ...]
    dual_stack: bool
    workloads: tuple[Workload, ...]
    services: tuple[Service, ...]
    externals: tuple[External, ...]
    calls: tuple[Call, ...]
    churn: tuple[Churn, ...]
    dns_upstream: bool = False
    """The cluster DNS answers its domain and forwards every other name to an upstream."""
    slot: int = 0
    """The cluster's address ranges (:class:`lab.ranges.Ranges`); 0 but in multi-cluster labs."""
    imports: tuple[Import, ...] = ()
    """Clusterset services the cluster resolves and translates (multi-cluster labs)."""
    peer_ranges: tuple[str, ...] = ()
    """Other clusters' ranges its fabric routes to their fabrics (multi-cluster labs)."""

    def workload(self, ref: str) -> Workload:
        for workload in self.workloads:
            if workload.ref == ref:
                return workload
        raise KeyError(ref)

    @property
    def prefix(self) -> str:
        """Every object the lab creates for this topology is named with this prefix."""
        return object_prefix(self.name)


def object_prefix(name: str) -> str:
    """``cml-<name>--``: a lab's names, never a prefix of another lab's (no ``--`` in names)."""
    return f"cml-{name}--"
