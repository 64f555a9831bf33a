"""Which of a plan's workloads a real cluster runs, and on which of its nodes. Pure.

The plan's own DNS server is the cluster's CoreDNS there, so it is not a lab
workload; a topology node stands for a cluster node by its index; and
:func:`check_topology` refuses what a real cluster cannot hold as the netns lab
does.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.addressing import Plan, PodPlan
from lab.errors import LabError
from lab.topologyrecords import DNS_NAMESPACE, DNS_SERVICE, DNS_WORKLOAD, Topology, Workload

SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
"""Namespaces a lab never creates, labels or deletes."""


def cluster_node(topology: Topology, nodes: Sequence[str], name: str) -> str:
    """The cluster node standing in for the topology's node ``name``."""
    if not nodes:
        raise LabError("the cluster has no nodes")
    return nodes[topology.nodes.index(name) % len(nodes)]


def lab_workloads(plan: Plan) -> tuple[Workload, ...]:
    """The topology's workloads: the plan's own DNS server is the cluster's CoreDNS here."""
    return tuple(w for w in plan.by_workload.values() if not is_dns_workload(w.ref))


def check_topology(plan: Plan) -> None:
    """Refuse what a real cluster cannot hold as the netns lab does."""
    _refuse_udp(plan)
    for workload in lab_workloads(plan):
        if workload.namespace in SYSTEM_NAMESPACES:
            raise LabError(
                f"workload {workload.ref}: the cluster lab keeps out of {workload.namespace!r}"
            )
    for service in plan.services:
        if service.key == f"{DNS_NAMESPACE}/{DNS_SERVICE}":
            continue
        if service.namespace in SYSTEM_NAMESPACES:
            raise LabError(
                f"service {service.key}: the cluster lab keeps out of {service.namespace!r}"
            )
        for ref in service.workloads:
            if ref.partition("/")[0] != service.namespace:
                raise LabError(
                    f"service {service.key} selects {ref}: a Kubernetes Service selects pods "
                    "in its own namespace only"
                )
    for index, step in enumerate(plan.churn):
        kind = plan.by_workload[step.victim.ref].kind
        if kind == "StatefulSet":
            live = [p for p in plan.pods_in_phase(index) if p.ref == step.victim.ref]
            if _ordinal(step.victim) != max(_ordinal(p) for p in live):
                raise LabError(
                    f"churn[{index}]: {step.victim.key}: a StatefulSet gives up its highest "
                    "ordinal only"
                )
        replacement = step.replacement
        if (
            replacement is not None
            and replacement.kind == "Pod"
            and replacement.ref != step.victim.ref
        ):
            raise LabError(
                f"churn[{index}].ip_to: {replacement.ref} is a bare Pod, which cannot get "
                "a second pod while its first lives"
            )


def _refuse_udp(plan: Plan) -> None:
    """UDP calls and ports are the netns lab's only, for now: the development
    cluster's "internet" answers TCP only, and its workloads' images serve TCP.
    (Capture follows UDP flows there as everywhere: a UDP flow nobody planned
    is an unexpected edge.)"""
    for index, call in enumerate(plan.topology.calls):
        if call.protocol == "udp":
            raise LabError(
                f"calls[{index}]: {call.client} -> {call.to}:{call.port} is a udp call; "
                "the cluster lab makes TCP calls only (run it in the netns lab)"
            )
    for service in plan.services:
        if not is_dns_service(service.key) and any(p.protocol == "UDP" for p in service.ports):
            raise LabError(
                f"service {service.key}: udp_ports are the netns lab's only; "
                "the cluster lab serves TCP"
            )


def _ordinal(pod: PodPlan) -> int:
    tail = pod.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def is_dns_workload(ref: str) -> bool:
    return ref == f"{DNS_NAMESPACE}/{DNS_WORKLOAD}"


def is_dns_service(key: str) -> bool:
    return key == f"{DNS_NAMESPACE}/{DNS_SERVICE}"
