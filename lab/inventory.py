"""The inventory file that ``callmap watch --inventory`` publishes, for a lab.

Pure: :func:`lab_records` turns the plan and the lab's pod history (when each
pod was created, and deleted) into the identity records, and
:func:`inventory_yaml` writes them in the one inventory format
(:mod:`callmap.inventory`).

A deleted pod stays, with ``deleted`` set, so that late events still resolve
against it; its replacement appears as a new pod with the same IPs, held
from its creation (``ips_since``: a lab pod's namespace is made with its
address), or, for a replacement that was Pending first, listed without IPs
from its creation and with them from when it got them. A StatefulSet's pods
carry ``hostname`` and ``subdomain`` as the StatefulSet controller sets them.
A service names the workloads that have a live pod with its IPs behind it, as
a cluster's EndpointSlices do: a workload whose last pod is gone drops out,
and ``workloads_since`` says when the set last changed (None while it is the
first set, as ``callmap watch`` writes it). So the file
says exactly what ``callmap watch`` makes of the same lab registered in an API
server (``lab up --kubernetes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callmap.inventory import InventoryRecords, dump_inventory
from callmap.wire import (
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    ServicePort,
    ServiceWorkload,
    WorkloadRef,
)
from lab.addressing import Plan, PodPlan

HEADER = "# Written by `callmap lab`; read by `callmap watch --inventory`.\n"


@dataclass(frozen=True, slots=True)
class PodLife:
    """A pod of the plan and when it lived (seconds since the epoch)."""

    pod: PodPlan
    created: float
    deleted: float | None = None
    ips_since: float | None = None
    """When it got its IPs, if later than ``created``."""
    pending: bool = False
    """Created but Pending: it holds no IP yet."""

    @property
    def holds_since(self) -> float | None:
        """Since when it holds its IPs; None while Pending."""
        if self.pending:
            return None
        return self.created if self.ips_since is None else self.ips_since


def lab_records(plan: Plan, lives: Sequence[PodLife]) -> InventoryRecords:
    """The identity records of a lab whose pods lived as ``lives`` say."""
    cluster = plan.topology.cluster
    pods = tuple(_pod(cluster, life) for life in lives)
    live = {life.pod.ref for life in lives if life.deleted is None and not life.pending}
    services = tuple(
        ServiceIdentity(
            cluster=cluster,
            namespace=s.namespace,
            name=s.name,
            type=s.type,  # type: ignore[arg-type]  # the plan only makes the three kinds
            cluster_ips=s.cluster_ips,
            external_name=s.external_name,
            ports=tuple(
                ServicePort(port=p.port, protocol=p.protocol, name=p.name, target_port=p.port)
                for p in s.ports
            ),
            workloads=tuple(_service_workload(plan, ref) for ref in s.workloads if ref in live),
            workloads_since=_workloads_since(s.workloads, lives),
            exported=s.exported,
        )
        for s in plan.services
    )
    nodes = tuple(NodeIdentity(cluster=cluster, name=n.name, ips=n.ips) for n in plan.nodes)
    return InventoryRecords(pods, services, nodes)


def inventory_yaml(plan: Plan, lives: Sequence[PodLife]) -> str:
    """The inventory file of a lab whose pods lived as ``lives`` say."""
    records = lab_records(plan, lives)
    return HEADER + dump_inventory(
        plan.topology.cluster, records.pods, records.services, records.nodes
    )


def _pod(cluster: str, life: PodLife) -> PodIdentity:
    pod = life.pod
    return PodIdentity(
        cluster=cluster,
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        ips=() if life.pending else pod.ips,
        node=pod.node,
        host_network=pod.host_network,
        workload=WorkloadRef(kind=pod.kind, name=pod.workload),
        labels=dict(pod.labels),
        created=life.created,
        deleted=life.deleted,
        ips_since=life.holds_since if pod.ips else None,
        hostname=pod.hostname,
        subdomain=pod.subdomain,
    )


def _workloads_since(refs: Sequence[str], lives: Sequence[PodLife]) -> float | None:
    """When the set of ``refs`` with a live pod last changed from a non-empty set.

    None while it is the first set, as ``callmap watch`` writes it.
    """
    mine = [life for life in lives if life.pod.ref in refs and life.holds_since is not None]
    steps = [(life.holds_since or life.created, 1, life.pod.ref) for life in mine]
    steps += [(life.deleted, -1, life.pod.ref) for life in mine if life.deleted is not None]
    alive = dict.fromkeys(refs, 0)
    current: frozenset[str] = frozenset()
    since: float | None = None
    for time, step, ref in sorted(steps):
        alive[ref] += step
        now = frozenset(r for r, n in alive.items() if n > 0)
        if now != current:
            since = time if current else since
            current = now
    return since


def _service_workload(plan: Plan, ref: str) -> ServiceWorkload:
    namespace, _, name = ref.partition("/")
    return ServiceWorkload(namespace=namespace, kind=plan.by_workload[ref].kind, name=name)
