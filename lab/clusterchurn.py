"""Churn on a real cluster: a pod goes for good, and its address goes to a given workload.

In the netns lab churn is the lab's to script: it deletes a pod and creates
the replacement with the victim's exact addresses. On a cluster the
controllers replace pods and host-local IPAM picks addresses, so one step
(:func:`apply_step`) does this, deterministically:

1. **Fill the victim's node** (only when the step has ``ip_to``). host-local
   IPAM hands out a node's addresses round-robin from the last one it gave,
   so a freed address comes back only after the rest of the range went round.
   The lab reads the node's IPv4 pod range (``spec.podCIDR``) and the
   addresses its pods hold (every namespace; pods still waiting for one
   count too), and creates as many placeholder pods
   (:func:`lab.clusterobjects.placeholder_pod`: ``sleep``, pinned with
   ``nodeName``, in the lab's ``cml-<lab>--ipam`` namespace) as there are free
   addresses (:func:`lab.clusterobjects.addresses_to_fill`). It waits until
   they have addresses or stop getting any (IPAM may hold addresses the API
   no longer shows, or use a smaller range), and deletes those left without
   one *before* the victim goes, so none of them can take its address. Now
   the victim's address is the only one the node can free.
2. **Remove the victim for good**, so that its controller does not replace
   it: a Deployment's pod gets ``controller.kubernetes.io/pod-deletion-cost``
   ``-1000000`` and the Deployment one replica less, so its ReplicaSet itself
   deletes exactly that pod; a StatefulSet gives up its highest ordinal (the
   topology's victim must be it); a Job's pod (a ``Job`` or a CronJob's run)
   is deleted, then its Job's ``parallelism`` lowered (``podReplacementPolicy:
   Failed`` keeps the Job from replacing it in between); a bare Pod is
   deleted. The step waits until the pod object is gone: its kubelet has torn
   the sandbox down and released the address by then.
3. **Give the address to** ``ip_to``: every other node is cordoned (marked
   :data:`lab.clusterlab.CORDONED_BY`, so ``down`` undoes it after a crash),
   the workload gets one pod more (replicas or parallelism; a bare Pod is
   applied again on that node), the scheduler can only put it on the
   victim's node, and IPAM can only give it the freed address. Once it runs,
   the nodes are uncordoned and the placeholders deleted. Should the new pod
   get another address after all, the step goes on and says so in the lab's
   notes: the truth follows the API record whatever happened.

The plan's replacement pod is bound to the new pod, so later steps and the
plan's addresses keep their meaning. :func:`run_churn` performs the steps on
schedule, ``at`` seconds after the release, with a clock and sleep of the
caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lab.addressing import ChurnStep, PodPlan
from lab.clusterlab import CORDONED_BY, POLL, ClusterLab, uncordon
from lab.clusterobjects import (
    CRONJOB_RUN_SUFFIX,
    DELETION_COST,
    PLACEHOLDER_LABEL,
    addresses_to_fill,
    collection_path,
    placeholder_namespace,
    placeholder_pod,
    workload_objects,
)
from lab.errors import LabError
from lab.kubeapi import KubeApiError

STEP_TIMEOUT = 120.0
FILL_SETTLE = 15.0
"""Seconds without a placeholder getting an address after which the rest count as stuck."""
LOWEST_COST = "-1000000"


def run_churn(
    lab: ClusterLab,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] = time.sleep,
    on_step: Callable[[ChurnStep], None] | None = None,
) -> None:
    """The remaining churn steps, each ``at`` seconds after the release."""
    if lab.released is None:
        raise LabError("the lab's calls are held: release them before churn")
    for index in range(lab.churn_done, len(lab.plan.churn)):
        step = lab.plan.churn[index]
        delay = lab.released + step.at - clock()
        if delay > 0:
            sleep(delay)
        apply_step(lab, index)
        if on_step is not None:
            on_step(step)


def apply_step(lab: ClusterLab, index: int) -> None:
    """Churn step ``index``: the victim goes, ``ip_to`` gets its address."""
    step = lab.plan.churn[index]
    victim = _real_pod(lab, step.victim)
    node = str(victim["spec"]["nodeName"])
    address = victim.get("status", {}).get("podIP")
    deadline = time.monotonic() + STEP_TIMEOUT
    placeholders = _fill(lab, node, deadline) if step.replacement is not None else []
    try:
        _remove(lab, step.victim, victim, deadline)
        lab.progress(f"churn[{index}]: {step.victim.ref} pod {victim['metadata']['name']} gone")
        if step.replacement is not None:
            name, new_address = _add(lab, step.replacement, node, deadline)
            lab.bindings[step.replacement.key] = name
            lab.progress(f"churn[{index}]: {step.replacement.ref} pod {name} has {new_address}")
            if new_address != address:
                lab.notes.append(
                    f"churn[{index}]: {step.replacement.ref}'s new pod {name} got {new_address}, "
                    f"not the freed {address}"
                )
    finally:
        for placeholder in placeholders:
            _delete(lab, placeholder, grace=0)
        uncordon(lab.client, lab.name)
    lab.churn_done = index + 1
    lab.save()


def _real_pod(lab: ClusterLab, planned: PodPlan) -> dict[str, Any]:
    name = lab.bindings.get(planned.key)
    if name is None:
        raise LabError(f"churn: no pod on the cluster stands for {planned.key} of the plan")
    return lab.client.get(f"{collection_path('Pod', planned.namespace)}/{name}")


# -- 1. fill the node ---------------------------------------------------------------


def _fill(lab: ClusterLab, node: str, deadline: float) -> list[str]:
    """Placeholder pods on every free address of ``node``; the paths of those created."""
    cidr = lab.client.get(f"/api/v1/nodes/{node}").get("spec", {}).get("podCIDR")
    if not cidr:
        lab.notes.append(f"node {node} has no podCIDR: its addresses were not filled")
        return []
    pods = lab.client.request(
        "GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"}
    ).get("items", [])
    own = [  # a finished pod's address is free again, whatever its status still says
        p
        for p in pods
        if not p.get("spec", {}).get("hostNetwork")
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]
    held = [i["ip"] for p in own for i in p.get("status", {}).get("podIPs") or []]
    waiting = sum(1 for p in own if not p.get("status", {}).get("podIP") and _pending(p))
    count = addresses_to_fill(str(cidr), held, waiting)
    image = lab.status.images["callmap"]
    existing = len(_placeholders(lab, node))
    paths = []
    for number in range(existing, existing + count):
        manifest = placeholder_pod(lab.name, node, number, image)
        lab.apply(manifest)
        paths.append(
            f"{collection_path('Pod', placeholder_namespace(lab.name))}/"
            f"{manifest['metadata']['name']}"
        )
    lab.progress(f"{count} placeholder pods fill the free addresses of {node} ({cidr})")
    settled_at, addressed = time.monotonic(), -1
    while True:
        current = [
            p for p in _placeholders(lab, node) if not p["metadata"].get("deletionTimestamp")
        ]
        with_address = [p for p in current if p.get("status", {}).get("podIP")]
        if len(with_address) != addressed:
            settled_at, addressed = time.monotonic(), len(with_address)
        done = len(with_address) >= len(current)
        if done or time.monotonic() - settled_at > FILL_SETTLE or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    stuck = [p for p in current if not p.get("status", {}).get("podIP")]
    for pod in stuck:
        path = (
            f"{collection_path('Pod', placeholder_namespace(lab.name))}/{pod['metadata']['name']}"
        )
        _delete(lab, path, grace=0)
        _wait_gone(lab, path, deadline)
    if stuck:
        lab.progress(f"{len(stuck)} placeholders got no address on {node}: removed")
    return [p for p in paths if p.rsplit("/", 1)[-1] not in {s["metadata"]["name"] for s in stuck}]


def _placeholders(lab: ClusterLab, node: str) -> list[dict[str, Any]]:
    answer = lab.client.request(
        "GET",
        collection_path("Pod", placeholder_namespace(lab.name)),
        query={"labelSelector": f"{PLACEHOLDER_LABEL}={node}"},
    )
    items: list[dict[str, Any]] = answer.get("items", [])
    return items


def _pending(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in (None, "Pending") and not pod["metadata"].get(
        "deletionTimestamp"
    )


# -- 2. remove the victim -----------------------------------------------------------


def _remove(lab: ClusterLab, planned: PodPlan, pod: dict[str, Any], deadline: float) -> None:
    namespace, name = planned.namespace, pod["metadata"]["name"]
    path = f"{collection_path('Pod', namespace)}/{name}"
    kind = lab.plan.by_workload[planned.ref].kind
    if kind == "Deployment":
        lab.client.merge_patch(path, {"metadata": {"annotations": {DELETION_COST: LOWEST_COST}}})
        _scale(lab, f"{collection_path('Deployment', namespace)}/{planned.workload}", -1)
    elif kind == "StatefulSet":
        _scale(lab, f"{collection_path('StatefulSet', namespace)}/{planned.workload}", -1)
    elif kind in ("Job", "CronJob"):
        job = _job_of(pod)
        _delete(lab, path)
        _scale(lab, f"{collection_path('Job', namespace)}/{job}", -1, "parallelism")
    else:
        _delete(lab, path)
    _wait_gone(lab, path, deadline)


def _job_of(pod: dict[str, Any]) -> str:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref["name"])
    raise LabError(f"pod {pod['metadata']['name']} has no Job owner")


def _scale(lab: ClusterLab, path: str, by: int, field: str = "replicas") -> int:
    current = int(lab.client.get(path).get("spec", {}).get(field, 0))
    lab.client.merge_patch(path, {"spec": {field: current + by}})
    return current + by


def _delete(lab: ClusterLab, path: str, grace: int | None = None) -> None:
    try:
        lab.client.delete(path, grace_seconds=grace)
    except KubeApiError as exc:
        if exc.status != 404:
            raise


def _wait_gone(lab: ClusterLab, path: str, deadline: float) -> None:
    while True:
        try:
            lab.client.get(path)
        except KubeApiError as exc:
            if exc.status == 404:
                return
            raise
        if time.monotonic() > deadline:
            raise LabError(f"churn: {path} is still there")
        time.sleep(POLL / 4)


# -- 3. the address to ip_to --------------------------------------------------------


def _add(lab: ClusterLab, planned: PodPlan, node: str, deadline: float) -> tuple[str, str | None]:
    """One pod more of ``planned``'s workload, on ``node``; its name and address."""
    before = {p["metadata"]["name"] for p in lab.pods_of(planned.ref)}
    _cordon_all_but(lab, node)
    namespace, workload = planned.namespace, planned.workload
    kind = lab.plan.by_workload[planned.ref].kind
    if kind in ("Deployment", "StatefulSet"):
        _scale(lab, f"{collection_path(kind, namespace)}/{workload}", +1)
    elif kind == "Job":
        _scale(lab, f"{collection_path('Job', namespace)}/{workload}", +1, "parallelism")
    elif kind == "CronJob":
        run = f"{workload}-{CRONJOB_RUN_SUFFIX}"
        _scale(lab, f"{collection_path('Job', namespace)}/{run}", +1, "parallelism")
    elif kind == "Pod":
        (manifest,) = workload_objects(lab.plan, lab.target(), planned.ref)
        manifest["spec"]["nodeName"] = node
        lab.apply(manifest)
    else:
        raise LabError(f"churn: {planned.ref} is a {kind}; it cannot get one pod more")
    while True:
        for pod in lab.pods_of(planned.ref):
            if pod["metadata"]["name"] in before:
                continue
            status = pod.get("status") or {}
            if status.get("podIP") and status.get("phase") == "Running":
                if pod["spec"].get("nodeName") != node:
                    lab.notes.append(f"{pod['metadata']['name']} went to another node than {node}")
                return str(pod["metadata"]["name"]), status.get("podIP")
        if time.monotonic() > deadline:
            raise LabError(f"churn: no new pod of {planned.ref} running in time")
        time.sleep(POLL / 2)


def _cordon_all_but(lab: ClusterLab, node: str) -> None:
    for name in lab.status.nodes:
        if name == node:
            continue
        current = lab.client.get(f"/api/v1/nodes/{name}")
        if current.get("spec", {}).get("unschedulable"):
            continue  # cordoned by someone else: theirs to undo
        lab.client.merge_patch(
            f"/api/v1/nodes/{name}",
            {"metadata": {"annotations": {CORDONED_BY: lab.name}}, "spec": {"unschedulable": True}},
        )
