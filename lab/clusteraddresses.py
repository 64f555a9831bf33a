"""Whose an address a call names is, and which real pod stands for which plan pod. Pure.

A topology's calls may name IP addresses of the netns lab's plan (a pod's, a
service's, a node's). On a real cluster those things get other addresses,
known only once their pods run: :func:`waves` orders the workloads so that a
workload starts after the pods whose addresses it calls, :func:`bind_pods`
pairs the plan's pods with the real ones, and :func:`real_address` picks the
real address of the same family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lab.addressing import Plan
from lab.clusterhistory import is_ip
from lab.clusterplan import cluster_node, lab_workloads
from lab.errors import LabError

AddressKind = Literal["pod", "service", "node", "other"]


@dataclass(frozen=True, slots=True)
class AddressTarget:
    """Whose an IP address a call names is in the netns lab's plan."""

    address: str
    kind: AddressKind
    holder: str
    """A plan pod's ``ns/name``, a service's ``ns/name``, a topology node's name, or ""."""


def literal_targets(plan: Plan) -> dict[str, AddressTarget]:
    """Every IP address a call names, and whose it is in the plan."""
    result: dict[str, AddressTarget] = {}
    for call in plan.topology.calls:
        if not is_ip(call.to) or call.to in result:
            continue
        result[call.to] = _classify(plan, call.to)
    return result


def _classify(plan: Plan, address: str) -> AddressTarget:
    for pod in plan.all_pods:
        if address in pod.ips and not pod.host_network:
            return AddressTarget(address, "pod", pod.key)
    for service in plan.services:
        if address in service.cluster_ips:
            return AddressTarget(address, "service", service.key)
    for node in plan.nodes:
        if address in node.ips:
            return AddressTarget(address, "node", node.name)
    return AddressTarget(address, "other", "")


def waves(plan: Plan) -> list[tuple[str, ...]]:
    """Workload refs in start order: a workload after those whose pod addresses it calls."""
    literals = literal_targets(plan)
    pods = {p.key: p for p in plan.all_pods}
    needs: dict[str, set[str]] = {w.ref: set() for w in lab_workloads(plan)}
    for call in plan.topology.calls:
        literal = literals.get(call.to)
        if literal is not None and literal.kind == "pod":
            needs[call.client].add(pods[literal.holder].ref)
    result: list[tuple[str, ...]] = []
    placed: set[str] = set()
    while len(placed) < len(needs):
        wave = tuple(ref for ref in needs if ref not in placed and needs[ref] <= placed)
        if not wave:
            stuck = sorted(ref for ref in needs if ref not in placed)
            raise LabError(
                "the cluster lab starts a workload after the pods whose addresses it calls; "
                f"these call each other's addresses: {', '.join(stuck)}"
            )
        result.append(wave)
        placed.update(wave)
    return result


def bind_pods(
    plan: Plan, workload: str, pods: Sequence[tuple[str, str, float]], nodes: Sequence[str]
) -> dict[str, str]:
    """Which real pod stands for which of the plan's first pods of ``workload``.

    ``pods`` are the real pods as ``(name, node, created)``. A StatefulSet's go
    by ordinal, a DaemonSet's by node; the others in creation order (then
    name), against the plan's pods in plan order. Returns plan ``ns/name`` ->
    real pod name; a plan pod without a real one is left out.
    """
    planned = [p for p in plan.pods if p.ref == workload]
    kind = plan.by_workload[workload].kind
    if kind == "DaemonSet":
        by_node = {node: name for name, node, _created in pods}
        result: dict[str, str] = {}
        for plan_pod in planned:
            node = cluster_node(plan.topology, nodes, plan_pod.node)
            if node in by_node and by_node[node] not in result.values():
                result[plan_pod.key] = by_node[node]
        return result
    if kind == "StatefulSet":
        real = sorted(pods, key=lambda p: int(p[0].rsplit("-", 1)[-1]))
    else:
        real = sorted(pods, key=lambda p: (p[2], p[0]))
    return {plan_pod.key: pod[0] for plan_pod, pod in zip(planned, real, strict=False)}


def real_address(literal: AddressTarget, candidates: Sequence[str]) -> str | None:
    """Of ``candidates`` (the addresses the cluster gave the literal's holder), the one of
    the literal's address family."""
    version = ipaddress.ip_address(literal.address).version
    for candidate in candidates:
        if ipaddress.ip_address(candidate).version == version:
            return candidate
    return None
