"""The netns lab's second truth: what the callers did, explained by the plan. Pure.

The lab's first truth (:mod:`lab.truth`) applies callmap's own resolution
rules to the plan, so it cannot catch a rule that is wrong. This one shares
none of that: it reads the **call log** every lab pod writes
(:mod:`lab.caller`: each attempt, the address it reached and the server's own
answer, ``pong <ns>/<pod>``) and explains each call with the objects a
Kubernetes API server would have held for the plan, through the real-cluster
lab's truth (:mod:`lab.clustertruth`, which knows Kubernetes' naming and
search paths and nothing of streams/, watch/ or capture/).

:func:`lab_history` is that record, built from the plan and the pods' lives
(when each was created and deleted, by the lab's clock, which is the callers'
clock): each pod holds its addresses from its creation (or from when it got
them, if it was Pending first) to its deletion, is
owned by its workload, and carries a label per service it stands behind, which
the service selects; nodes hold their addresses for the whole run. The lab's
"internet" is one host for every external and answers ``pong internet``: a
call's external is the name the caller asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from lab.addressing import Plan, PodPlan, ServicePlan
from lab.clusterhistory import (
    ApiHistory,
    ControllerState,
    NodeState,
    Owner,
    PodState,
    ServiceState,
    Timeline,
)
from lab.clustertruth import CallRecord, ClusterTruth, true_edges
from lab.inventory import PodLife

SERVES_LABEL = "calltruth.lab.callmap.io/serves-"
"""A pod's label for each service it stands behind: ``<prefix><service name>``."""
INTERNET_ANSWER = "pong internet"


def lab_history(plan: Plan, lives: Sequence[PodLife]) -> ApiHistory:
    """What an API server would have held for the plan, the pods living as ``lives`` say."""
    history = ApiHistory()
    serving: dict[str, list[str]] = {}
    for service in plan.services:
        for ref in service.workloads:
            serving.setdefault(ref, []).append(service.name)
        history.services.setdefault(service.key, Timeline()).add(0.0, _service_state(service))
    for life in lives:
        pod = _pod_state(life.pod, serving.get(life.pod.ref, []))
        if pod.owner is not None:
            owner = pod.owner
            history.controllers[owner.uid] = ControllerState(
                owner.kind, owner.uid, pod.namespace, owner.name, None
            )
        versions = history.pods.setdefault(life.pod.uid, Timeline())
        holds = life.holds_since
        if holds is None or holds > life.created:  # Pending first: no address yet
            versions.add(life.created, replace(pod, ips=()))
        if holds is not None:
            versions.add(holds, pod)
        if life.deleted is not None:
            versions.add(life.deleted, None)
    for node in plan.nodes:
        ips = tuple(ip for ip in (node.ipv4, node.ipv6) if ip)
        history.nodes.setdefault(node.name, Timeline()).add(0.0, NodeState(node.name, ips))
    return history


def _service_state(service: ServicePlan) -> ServiceState:
    selects = {f"{SERVES_LABEL}{service.name}": "true"} if service.workloads else None
    return ServiceState(
        uid=f"service/{service.key}",
        namespace=service.namespace,
        name=service.name,
        type=service.type,
        cluster_ips=service.cluster_ips,
        selector=selects,
        external_name=service.external_name,
    )


def _pod_state(pod: PodPlan, services: Iterable[str]) -> PodState:
    labels = {**pod.labels, **{f"{SERVES_LABEL}{name}": "true" for name in services}}
    owner = None if pod.kind == "Pod" else Owner(pod.kind, pod.workload, f"{pod.kind}/{pod.ref}")
    return PodState(
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        node=pod.node,
        host_network=pod.host_network,
        ips=pod.ips,
        labels=labels,
        owner=owner,
        hostname=pod.hostname,
        subdomain=pod.subdomain,
    )


def lab_call_truth(
    plan: Plan,
    lives: Sequence[PodLife],
    calls: Iterable[CallRecord],
    capture_started: float | None,
) -> ClusterTruth:
    """The edges the logged calls make, as the plan explains them."""
    named = [_internet_named(call) for call in calls]
    return true_edges(named, lab_history(plan, lives), plan.topology.domain, capture_started)


def _internet_named(call: CallRecord) -> CallRecord:
    """The internet's answer as an external's: ``pong external:`` (the caller's name)."""
    if call.peer != INTERNET_ANSWER:
        return call
    return replace(call, peer="pong external:")


def last_calls(
    plan: Plan,
    lives: Sequence[PodLife],
    calls: Iterable[CallRecord],
    capture_started: float | None,
) -> dict[tuple[str, str], float]:
    """When each (client, server) pair was last called successfully, by the logs."""
    history = lab_history(plan, lives)
    last: dict[tuple[str, str], float] = {}
    for call in calls:
        if not call.ok:
            continue
        one = true_edges([_internet_named(call)], history, plan.topology.domain, capture_started)
        for edge in one.edges:
            pair = (edge.client, edge.server)
            last[pair] = max(last.get(pair, call.t), call.t)
    return last
