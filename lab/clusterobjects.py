"""A topology as objects for a real Kubernetes cluster (``lab run --on cluster``). Pure.

The netns lab plays every part of a cluster itself; on a real cluster
(:mod:`lab.clusterlab`) the controllers, the scheduler, the kubelets, CNI
and CoreDNS play them, and the lab only writes what a user would write:

- a ``Namespace`` per namespace of the topology, labelled
  :data:`LAB_LABEL` ``=<lab name>`` (so ``down`` finds them), and one more,
  :func:`placeholder_namespace`, for the churn's placeholder pods;
- a controller per workload of its kind: ``Deployment``, ``StatefulSet``
  (``serviceName``: the headless service selecting it, else its own
  service, else its own name; pods start in parallel), ``DaemonSet``, ``Job``
  and ``CronJob``, and a bare ``Pod``. A Job's pods never end, so a Job asks
  for :data:`JOB_COMPLETIONS` completions ``replicas`` at a time, and only
  failed pods are replaced (``podReplacementPolicy: Failed``: churn deletes a
  pod, then lowers ``parallelism``, without a replacement in between). A
  CronJob's runs would never end either, so the schedule (every minute) is
  suspended and the lab starts one run itself, as ``kubectl create job
  --from=cronjob/...`` does: :func:`cronjob_run`, a Job of ``replicas`` pods
  owned by the CronJob;
- ``Service`` objects: ClusterIP, headless or ExternalName, with the
  cluster's own addresses (the plan's ``10.96.x.y`` are the netns lab's), each
  selecting the label :func:`service_label` that the lab puts on exactly the
  pods of the workloads behind it (a Service selects pods in its own namespace
  only: a topology service selecting another namespace's workload is refused);
- every pod runs the ``callmap`` image (``imagePullPolicy: Never``) as
  ``python -m lab.caller --env CALLMAP_LAB_SPEC``: the spec is JSON in that
  variable, naming the pod through the downward API (``$(POD_NAMESPACE)``,
  ``$(POD_NAME)``, which the kubelet expands); it listens on the ports
  :func:`lab.truth.listen_ports` gives the workload, holds its calls until the
  release file exists, and logs every call to ``logs/<ns>.<pod>.jsonl`` in a
  hostPath directory of the lab's (:data:`LAB_MOUNT` in the container). The
  caller runs as root: topologies listen on ports below 1024, on the node's
  own network too (``hostNetwork``), and write to that host directory;
- labels: the topology's, ``app.kubernetes.io/name`` (the workload),
  :data:`LAB_LABEL`, :data:`WORKLOAD_LABEL` (what controllers select) and the
  service labels. ``dns_tcp`` becomes ``dnsConfig`` option ``use-vc``;
  ``node`` a ``nodeSelector`` on the cluster node in the same place of the
  list (a topology with more nodes than the cluster folds onto its nodes).

Calls to IP addresses of the netns lab's plan (a pod's, a service's, a
node's) are rewritten to the cluster's address of the same thing
(``addresses``), which is only known once that pod runs:
:mod:`lab.clusteraddresses` orders the workloads so that a workload starts
after the pods whose addresses it calls. Nothing here talks to a cluster;
:func:`object_path` says where each object goes for a server-side apply.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.addressing import Plan
from lab.clusteraddresses import literal_targets
from lab.clusterhistory import is_ip
from lab.clusterplan import check_topology, cluster_node, is_dns_service, lab_workloads
from lab.errors import LabError
from lab.topologyrecords import Workload
from lab.truth import listen_ports

LAB_LABEL = "lab.callmap.io/lab"
"""Every object of a lab: the lab's name."""
WORKLOAD_LABEL = "lab.callmap.io/workload"
"""A pod's workload name; its controller selects by it."""
NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "callmap-lab"
"""The field manager of the lab's server-side applies, and its managed-by label."""
SERVICE_LABEL_DOMAIN = "svc.lab.callmap.io"
PLACEHOLDER_LABEL = "lab.callmap.io/placeholder"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
HOSTNAME_LABEL = "kubernetes.io/hostname"

SPEC_ENV = "CALLMAP_LAB_SPEC"
LAB_MOUNT = "/callmap-lab"
"""Where the lab's host directory is mounted in every pod."""
LOG_DIR = "logs"
RELEASE_FILE = "release"
"""Calls other than ``before_capture`` wait until this file exists in the host directory."""
CRON_SCHEDULE = "* * * * *"
JOB_COMPLETIONS = 100_000
JOB_BACKOFF_LIMIT = 100
GRACE_SECONDS = 2
CRONJOB_RUN_SUFFIX = "28000000"
"""A CronJob's run is ``<cronjob>-28000000``, shaped like the controller's ``<name>-<minute>``."""

_PLURALS = {
    "Namespace": ("v1", "namespaces"),
    "Service": ("v1", "services"),
    "Pod": ("v1", "pods"),
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
}
_CLUSTER_SCOPED = frozenset({"Namespace", "Node"})

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """What the manifests need to know of the cluster and the lab's files."""

    lab: str
    """The lab's name (the topology's)."""
    image: str
    """The callmap image, with ``lab`` installed and ``python`` on PATH."""
    nodes: tuple[str, ...]
    """The cluster's node names, in order."""
    host_dir: str
    """The lab's directory on the nodes (this machine), mounted at :data:`LAB_MOUNT`."""
    addresses: Mapping[str, str] = field(default_factory=dict)
    """Plan address -> cluster address, for calls to IP addresses."""


def placeholder_namespace(lab: str) -> str:
    """Where churn's placeholder pods live: ``cml-<lab>--ipam``."""
    return f"cml-{lab}--ipam"


def service_label(service: str) -> str:
    """The label a service's pods carry and the service selects on."""
    return f"{SERVICE_LABEL_DOMAIN}/{service}"


# --- objects --------------------------------------------------------------------


def object_path(manifest: Mapping[str, Any]) -> str:
    """The API path of ``manifest`` (a server-side apply is a PATCH there)."""
    kind = str(manifest["kind"])
    api_version, plural = _PLURALS[kind]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    metadata = manifest["metadata"]
    if kind in _CLUSTER_SCOPED:
        return f"{base}/{plural}/{metadata['name']}"
    return f"{base}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"


def collection_path(kind: str, namespace: str | None = None) -> str:
    api_version, plural = _PLURALS[kind]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def namespaces(plan: Plan) -> list[Manifest]:
    names = {w.namespace for w in lab_workloads(plan)}
    names |= {s.namespace for s in plan.services if not is_dns_service(s.key)}
    names.add(placeholder_namespace(plan.topology.name))
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": _lab_labels(plan.topology.name)},
        }
        for name in sorted(names)
    ]


def services(plan: Plan) -> list[Manifest]:
    result = []
    for service in plan.services:
        if is_dns_service(service.key):
            continue
        metadata = {
            "name": service.name,
            "namespace": service.namespace,
            "labels": {**_lab_labels(plan.topology.name), NAME_LABEL: service.name},
        }
        spec: dict[str, Any]
        if service.type == "ExternalName":
            spec = {"type": "ExternalName", "externalName": service.external_name}
        else:
            spec = {
                "type": "ClusterIP",
                "selector": {service_label(service.name): "true"},
                "ports": [
                    {
                        "name": f"tcp-{p.port}",
                        "port": p.port,
                        "targetPort": p.port,
                        "protocol": "TCP",
                    }
                    for p in service.ports
                ],
            }
            if service.type == "Headless":
                spec["clusterIP"] = "None"
            if plan.topology.dual_stack:
                spec["ipFamilyPolicy"] = "PreferDualStack"
        result.append({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})
    return result


def workload_objects(plan: Plan, target: ClusterTarget, ref: str) -> list[Manifest]:
    """The controller of workload ``ref`` (a CronJob's run needs its uid: :func:`cronjob_run`)."""
    workload = plan.by_workload[ref]
    template = pod_template(plan, target, workload)
    metadata = _metadata(plan, workload, workload.name)
    selector = {"matchLabels": {WORKLOAD_LABEL: workload.name}}
    kind = workload.kind
    if kind == "Pod":
        body = {"metadata": {**metadata, "labels": template["metadata"]["labels"]}}
        return [{"apiVersion": "v1", "kind": "Pod", **body, "spec": template["spec"]}]
    spec: dict[str, Any]
    if kind == "Deployment":
        spec = {"replicas": workload.replicas, "selector": selector, "template": template}
    elif kind == "StatefulSet":
        spec = {
            "replicas": workload.replicas,
            "selector": selector,
            "serviceName": governing_service(plan, workload),
            "podManagementPolicy": "Parallel",
            "template": template,
        }
    elif kind == "DaemonSet":
        spec = {"selector": selector, "template": template}
    elif kind == "Job":
        spec = _job_spec(workload.replicas, template)
    else:  # CronJob
        job_template = {"metadata": {"labels": dict(metadata["labels"])}}
        job_template["spec"] = _job_spec(workload.replicas, template)
        spec = {
            "schedule": CRON_SCHEDULE,
            "suspend": True,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": job_template,
        }
    api_version = _PLURALS[kind][0]
    return [{"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}]


def cronjob_run(plan: Plan, target: ClusterTarget, ref: str, cronjob_uid: str) -> Manifest:
    """The one run of CronJob ``ref`` the lab starts, owned by the CronJob (uid given)."""
    workload = plan.by_workload[ref]
    metadata = _metadata(plan, workload, f"{workload.name}-{CRONJOB_RUN_SUFFIX}")
    metadata["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": workload.name,
            "uid": cronjob_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = _job_spec(workload.replicas, pod_template(plan, target, workload))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _job_spec(parallelism: int, template: Manifest) -> dict[str, Any]:
    return {
        "parallelism": parallelism,
        "completions": JOB_COMPLETIONS,
        "backoffLimit": JOB_BACKOFF_LIMIT,
        "podReplacementPolicy": "Failed",
        "template": template,
    }


def governing_service(plan: Plan, workload: Workload) -> str:
    """A StatefulSet's ``serviceName``: the headless service selecting it, else its own."""
    headless = [
        s.name for s in plan.services if s.type == "Headless" and workload.ref in s.workloads
    ]
    if headless:
        return headless[0]
    return workload.service.name if workload.service is not None else workload.name


def pod_template(plan: Plan, target: ClusterTarget, workload: Workload) -> Manifest:
    batch = workload.kind in ("Job", "CronJob")
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if batch else "Always",
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "dnsPolicy": "ClusterFirstWithHostNet" if workload.host_network else "ClusterFirst",
        "containers": [_container(plan, target, workload)],
        "volumes": [
            {"name": "lab", "hostPath": {"path": target.host_dir, "type": "DirectoryOrCreate"}}
        ],
    }
    if workload.host_network:
        spec["hostNetwork"] = True
    if workload.dns_tcp:
        spec["dnsConfig"] = {"options": [{"name": "use-vc"}]}
    if workload.node is not None:
        node = cluster_node(plan.topology, target.nodes, workload.node)
        spec["nodeSelector"] = {HOSTNAME_LABEL: node}
    return {"metadata": {"labels": pod_labels(plan, workload)}, "spec": spec}


def pod_labels(plan: Plan, workload: Workload) -> dict[str, str]:
    labels = dict(workload.labels)
    labels |= _lab_labels(plan.topology.name)
    labels |= {NAME_LABEL: workload.name, WORKLOAD_LABEL: workload.name}
    for service in plan.services:
        if workload.ref in service.workloads and not is_dns_service(service.key):
            labels[service_label(service.name)] = "true"
    return labels


def caller_spec(plan: Plan, target: ClusterTarget, workload: Workload) -> dict[str, Any]:
    """The caller's spec; ``$(POD_NAMESPACE)`` and ``$(POD_NAME)`` are the kubelet's to fill."""
    pod = "$(POD_NAMESPACE)/$(POD_NAME)"
    calls = []
    for call in plan.topology.calls:
        if call.client != workload.ref:
            continue
        to = call.to
        if is_ip(to) and literal_targets(plan)[to].kind != "other":
            if to not in target.addresses:
                raise LabError(f"{workload.ref} calls {to}: its cluster address is not known yet")
            to = target.addresses[to]
        calls.append(
            {
                "to": to,
                "port": call.port,
                "rate": call.rate,
                "long_lived": call.long_lived,
                "before_capture": call.before_capture,
                "family": call.family,
            }
        )
    return {
        "pod": pod,
        "listen": sorted(listen_ports(plan).get(workload.ref, ())),
        "hold": True,
        "release_file": f"{LAB_MOUNT}/{RELEASE_FILE}",
        "log": f"{LAB_MOUNT}/{LOG_DIR}/$(POD_NAMESPACE).$(POD_NAME).jsonl",
        "calls": calls,
    }


def _container(plan: Plan, target: ClusterTarget, workload: Workload) -> dict[str, Any]:
    spec = caller_spec(plan, target, workload)
    return {
        "name": "caller",
        "image": target.image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", "lab.caller", "--env", SPEC_ENV],
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": SPEC_ENV, "value": json.dumps(spec, separators=(",", ":"))},
        ],
        "ports": [{"containerPort": port, "protocol": "TCP"} for port in spec["listen"]],
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False},
        "volumeMounts": [{"name": "lab", "mountPath": LAB_MOUNT}],
    }


def addresses_to_fill(pod_cidr: str, held: Iterable[str], waiting: int) -> int:
    """How many placeholder pods fill what is free of a node's IPv4 pod range.

    The range's first address is the pod bridge's, the last its broadcast;
    ``held`` are the addresses pods of the node hold (all namespaces, the
    victim's included), ``waiting`` the node's pods still waiting for one.
    """
    network = ipaddress.ip_network(pod_cidr)
    usable = set(network.hosts()) - {network.network_address + 1}
    taken = {ipaddress.ip_address(ip) for ip in held} & usable
    return max(0, len(usable) - len(taken) - waiting)


def placeholder_pod(lab: str, node: str, index: int, image: str) -> Manifest:
    """A pod that only holds an address of ``node``'s pod range (see :mod:`lab.clusterlab`)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"ipam-{node}-{index}",
            "namespace": placeholder_namespace(lab),
            "labels": {**_lab_labels(lab), PLACEHOLDER_LABEL: node},
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "hold",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "infinity"],
                }
            ],
        },
    }


def lab_objects(
    plan: Plan, target: ClusterTarget, refs: Iterable[str] | None = None
) -> list[Manifest]:
    """Namespaces, services and the controllers of ``refs`` (default: every workload),
    in apply order (a CronJob's run comes later: it needs the CronJob's uid)."""
    check_topology(plan)
    chosen = [w.ref for w in lab_workloads(plan)] if refs is None else list(refs)
    objects = [*namespaces(plan), *services(plan)]
    for ref in chosen:
        objects += workload_objects(plan, target, ref)
    return objects


def _metadata(plan: Plan, workload: Workload, name: str) -> dict[str, Any]:
    labels = {**_lab_labels(plan.topology.name), NAME_LABEL: workload.name}
    return {"name": name, "namespace": workload.namespace, "labels": labels}


def _lab_labels(lab: str) -> dict[str, str]:
    return {LAB_LABEL: lab, MANAGED_BY_LABEL: MANAGER}
