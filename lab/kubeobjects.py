"""The lab as Kubernetes objects: what the API server of a cluster running the plan holds. Pure.

:func:`cluster_objects` turns the plan and its live pods into manifests, in
the order they must be created, as a cluster's controllers and kubelets would
have written them:

- Namespaces; Nodes whose status carries their ``InternalIP`` addresses;
- the workloads' controllers as their kinds say: a Deployment and its
  ReplicaSet (``<name>-<pod-template-hash>``), StatefulSets, DaemonSets, Jobs,
  CronJobs and the Job of each of their pods; a ``Pod`` workload has none;
- Pods with their labels, ``nodeName``, ``hostNetwork``, StatefulSet
  ``hostname``/``subdomain``, the ports they listen on and an ownerReference
  to their controller, and a status (``Running``, ``podIP``/``podIPs``,
  ``hostIP``) written afterwards through the status subresource;
- Services with the plan's exact cluster IPs (ClusterIP, single or dual
  stack; headless; ExternalName) and ports;
- EndpointSlices, one per service and address family, naming every live pod
  behind the service (``targetRef``), labelled ``kubernetes.io/service-name``
  and owned by their Service.

No controller runs beside the lab's API server: the lab writes all of it,
and selectors are what a user would write, for people to read. Controllers
select their pods by the lab's own label :data:`WORKLOAD_LABEL`; a service
selects its workload's labels (labels shared by every workload behind it, or
none).

The server assigns uids, so manifests name owners (and slices' target pods)
by :class:`ObjectRef`; :func:`with_uids` fills the uids in before a create.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab.addressing import Plan, PodPlan, ServicePlan, name_suffix, template_hash
from lab.topologyrecords import DNS_NAMESPACE, DNS_WORKLOAD, TRANSPORTS, Workload
from lab.truth import listen_ports

WORKLOAD_LABEL = "lab.callmap.io/workload"
"""Every lab pod's workload name; its controller selects by it."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "lab.callmap.io"
"""Who manages the lab's EndpointSlices (there is no endpoint controller)."""
IMAGE = "callmap.invalid/lab-caller:1"
"""What the pods say they run (``python -m lab.caller``); nothing pulls it."""
CRON_SCHEDULE = "0 * * * *"

_PLURALS = {
    "Namespace": "namespaces",
    "Node": "nodes",
    "Pod": "pods",
    "Service": "services",
    "EndpointSlice": "endpointslices",
    "Deployment": "deployments",
    "ReplicaSet": "replicasets",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "CronJob": "cronjobs",
}
_API_VERSIONS = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "EndpointSlice": "discovery.k8s.io/v1",
}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Which object: kind, namespace (None for cluster-wide kinds) and name."""

    kind: str
    namespace: str | None
    name: str

    @property
    def api_version(self) -> str:
        return _API_VERSIONS.get(self.kind, "v1")

    @property
    def collection(self) -> str:
        """The URL path objects of this kind are created at."""
        group = self.api_version
        path = f"/apis/{group}" if "/" in group else f"/api/{group}"
        if self.namespace is not None:
            path += f"/namespaces/{self.namespace}"
        return f"{path}/{_PLURALS[self.kind]}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class KubeObject:
    ref: ObjectRef
    body: Mapping[str, Any]
    """The manifest, without the uids the server assigns (see :func:`with_uids`)."""
    owner: ObjectRef | None = None
    """Its controller, named in ``metadata.ownerReferences`` with its uid."""
    status: Mapping[str, Any] | None = None
    """What a kubelet or controller writes through the status subresource afterwards."""


def with_uids(obj: KubeObject, uid_of: Callable[[ObjectRef], str]) -> dict[str, Any]:
    """The manifest to send: the owner's uid in ``ownerReferences``, target pods' uids."""
    body = copy.deepcopy(dict(obj.body))
    if obj.owner is not None:
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": obj.owner.api_version,
                "kind": obj.owner.kind,
                "name": obj.owner.name,
                "uid": uid_of(obj.owner),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    for endpoint in body.get("endpoints", []):
        target = endpoint["targetRef"]
        target["uid"] = uid_of(ObjectRef("Pod", target["namespace"], target["name"]))
    return body


# --- the whole cluster ----------------------------------------------------------


def cluster_objects(plan: Plan, pods: Iterable[PodPlan], now: float) -> list[KubeObject]:
    """Everything the API server of a cluster with these live pods holds, in creation order."""
    live = tuple(pods)
    objects = [*namespaces(plan), *nodes(plan), *controllers(plan, live)]
    objects += [pod_object(plan, pod, now) for pod in live]
    objects += [service_object(plan, service) for service in plan.services]
    objects += endpoint_slices(plan, live)
    return objects


def namespaces(plan: Plan) -> list[KubeObject]:
    names = {w.namespace for w in plan.by_workload.values()}
    names |= {s.namespace for s in plan.services}
    return [
        KubeObject(ObjectRef("Namespace", None, name), {"metadata": {"name": name}})
        for name in sorted(names)
    ]


def nodes(plan: Plan) -> list[KubeObject]:
    result = []
    for node in plan.nodes:
        cidrs = [node.pod_cidr_v4, node.pod_cidr_v6] if plan.topology.dual_stack else []
        body = {
            "metadata": {
                "name": node.name,
                "labels": {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"},
            },
            "spec": {"podCIDR": node.pod_cidr_v4, "podCIDRs": cidrs or [node.pod_cidr_v4]},
        }
        addresses = [{"type": "InternalIP", "address": ip} for ip in node.ips]
        addresses.append({"type": "Hostname", "address": node.name})
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
        status = {"addresses": addresses, "conditions": [ready]}
        result.append(KubeObject(ObjectRef("Node", None, node.name), body, status=status))
    return result


# --- controllers ----------------------------------------------------------------


def controllers(plan: Plan, pods: Iterable[PodPlan]) -> list[KubeObject]:
    """Every workload's controller, and the ReplicaSets and Jobs that stand between it and
    its pods; owners before what they own."""
    result: dict[ObjectRef, KubeObject] = {}
    for workload in plan.by_workload.values():
        for obj in _workload_controllers(plan, workload):
            result.setdefault(obj.ref, obj)
    for pod in pods:
        for obj in pod_controllers(plan, pod):
            result.setdefault(obj.ref, obj)
    return list(result.values())


def pod_controllers(plan: Plan, pod: PodPlan) -> list[KubeObject]:
    """The controllers ``pod`` needs, its direct owner last."""
    workload = plan.by_workload[pod.ref]
    chain = _workload_controllers(plan, workload)
    if workload.kind == "CronJob":  # each run is a Job of its own: <cronjob>-<time>
        job = pod.name.rsplit("-", 1)[0]
        cronjob = chain[0].ref
        chain.append(_controller(plan, workload, "Job", job, owner=cronjob, replicas=1))
    return chain


def controller_of(plan: Plan, pod: PodPlan) -> ObjectRef | None:
    """The ownerReference of ``pod``: None for a bare Pod."""
    chain = pod_controllers(plan, pod)
    return chain[-1].ref if chain else None


def _workload_controllers(plan: Plan, workload: Workload) -> list[KubeObject]:
    if workload.kind == "Pod":
        return []
    top = _controller(plan, workload, workload.kind, workload.name, owner=None)
    if workload.kind != "Deployment":
        return [top]
    replica_set = f"{workload.name}-{template_hash(plan.topology.name, workload)}"
    return [top, _controller(plan, workload, "ReplicaSet", replica_set, owner=top.ref)]


def _controller(
    plan: Plan,
    workload: Workload,
    kind: str,
    name: str,
    owner: ObjectRef | None,
    replicas: int | None = None,
) -> KubeObject:
    count = workload.replicas if replicas is None else replicas
    labels = _template_labels(plan, workload, kind)
    template = {
        "metadata": {"labels": labels},
        "spec": _pod_template_spec(plan, workload),
    }
    spec: dict[str, Any]
    if kind in ("Job", "CronJob"):  # a Job's selector is the API server's to generate
        job = {"parallelism": count, "completions": count, "template": template}
        spec = job if kind == "Job" else {"schedule": CRON_SCHEDULE, "jobTemplate": {"spec": job}}
    else:
        selector = {"matchLabels": _selector_labels(plan, workload, kind)}
        spec = {"selector": selector, "template": template}
        if kind != "DaemonSet":
            spec["replicas"] = count
    metadata = {"name": name, "namespace": workload.namespace, "labels": dict(workload.labels)}
    if kind == "ReplicaSet":
        metadata["labels"] = labels
    body = {"metadata": metadata, "spec": spec}
    return KubeObject(ObjectRef(kind, workload.namespace, name), body, owner=owner)


def _selector_labels(plan: Plan, workload: Workload, kind: str) -> dict[str, str]:
    labels = {WORKLOAD_LABEL: workload.name}
    if kind == "ReplicaSet":
        labels["pod-template-hash"] = template_hash(plan.topology.name, workload)
    return labels


def _template_labels(plan: Plan, workload: Workload, kind: str) -> dict[str, str]:
    return {**workload.labels, **_selector_labels(plan, workload, kind)}


def _pod_template_spec(plan: Plan, workload: Workload) -> dict[str, Any]:
    """What every pod of ``workload`` has in its spec (a pod adds its node and name)."""
    batch = workload.kind in ("Job", "CronJob")
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if batch else "Always",
        "dnsPolicy": "ClusterFirstWithHostNet" if workload.host_network else "ClusterFirst",
        "containers": [_container(plan, workload)],
    }
    if workload.host_network:
        spec["hostNetwork"] = True
    return spec


def _container(plan: Plan, workload: Workload) -> dict[str, Any]:
    if workload.ref == f"{DNS_NAMESPACE}/{DNS_WORKLOAD}":
        ports = [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
        ]
        return {"name": "dnsmasq", "image": IMAGE, "command": ["dnsmasq"], "ports": ports}
    ports = [
        {"containerPort": port, "protocol": protocol.upper()}
        for protocol in TRANSPORTS
        for port in sorted(listen_ports(plan, protocol).get(workload.ref, ()))
    ]
    return {
        "name": "caller",
        "image": IMAGE,
        "command": ["python3", "-m", "lab.caller"],
        "ports": ports,
    }


# --- pods -----------------------------------------------------------------------


def pod_object(plan: Plan, pod: PodPlan, now: float) -> KubeObject:
    """A pod as its controller made it and its kubelet reports it, started at ``now``."""
    workload = plan.by_workload[pod.ref]
    owner = controller_of(plan, pod)
    labels = _template_labels(plan, workload, owner.kind if owner else "Pod")
    if workload.kind == "StatefulSet":
        labels["statefulset.kubernetes.io/pod-name"] = pod.name
        labels["apps.kubernetes.io/pod-index"] = pod.name.rsplit("-", 1)[-1]
    if owner is not None and owner.kind == "Job":
        labels["batch.kubernetes.io/job-name"] = labels["job-name"] = owner.name
    spec = _pod_template_spec(plan, workload) | {"nodeName": pod.node}
    if pod.hostname and pod.subdomain:
        spec |= {"hostname": pod.hostname, "subdomain": pod.subdomain}
    body = {
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": labels},
        "spec": spec,
    }
    node = plan.node(pod.node)
    started = _rfc3339(now)
    status = {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": started}
            for kind in (
                "PodReadyToStartContainers",  # the sandbox has its network: its IPs from now
                "PodScheduled",
                "Initialized",
                "ContainersReady",
                "Ready",
            )
        ],
        "hostIP": node.ipv4,
        "hostIPs": [{"ip": ip} for ip in node.ips],
        "podIP": pod.ips[0],
        "podIPs": [{"ip": ip} for ip in pod.ips],
        "startTime": started,
    }
    return KubeObject(ObjectRef("Pod", pod.namespace, pod.name), body, owner, status)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- services -------------------------------------------------------------------


def service_object(plan: Plan, service: ServicePlan) -> KubeObject:
    ref = ObjectRef("Service", service.namespace, service.name)
    metadata = {"name": service.name, "namespace": service.namespace}
    if service.type == "ExternalName":
        spec: dict[str, Any] = {"type": "ExternalName", "externalName": service.external_name}
        return KubeObject(ref, {"metadata": metadata, "spec": spec})
    spec = {
        "type": "ClusterIP",
        "ports": [
            {"name": p.name, "port": p.port, "protocol": p.protocol, "targetPort": p.port}
            for p in service.ports
        ],
    }
    if service.type == "Headless":
        spec |= {"clusterIP": "None", "clusterIPs": ["None"]}
        families = ["IPv4", "IPv6"] if plan.topology.dual_stack else ["IPv4"]
    else:
        spec |= {"clusterIP": service.cluster_ips[0], "clusterIPs": list(service.cluster_ips)}
        families = [_family(ip) for ip in service.cluster_ips]
    spec["ipFamilies"] = families
    spec["ipFamilyPolicy"] = "RequireDualStack" if len(families) > 1 else "SingleStack"
    selector = _service_selector(plan, service)
    if selector:
        spec["selector"] = selector
    return KubeObject(ref, {"metadata": metadata, "spec": spec})


def _service_selector(plan: Plan, service: ServicePlan) -> dict[str, str]:
    """The labels every workload behind ``service`` shares (a single one's: all its labels)."""
    label_sets = [dict(plan.by_workload[ref].labels) for ref in service.workloads]
    if not label_sets:
        return {}
    shared = label_sets[0]
    for labels in label_sets[1:]:
        shared = {k: v for k, v in shared.items() if labels.get(k) == v}
    if len(service.workloads) == 1 and not shared:
        namespace, _, name = service.workloads[0].partition("/")
        if namespace == service.namespace:
            shared = {WORKLOAD_LABEL: name}
    return shared


def _family(ip: str) -> str:
    return "IPv4" if ipaddress.ip_address(ip).version == 4 else "IPv6"


def endpoint_slices(plan: Plan, pods: Iterable[PodPlan]) -> list[KubeObject]:
    """One slice per service (not ExternalName) and address family, naming its live pods."""
    live = tuple(pods)
    families = ("IPv4", "IPv6") if plan.topology.dual_stack else ("IPv4",)
    return [
        _slice(plan, service, family, live)
        for service in plan.services
        if service.type != "ExternalName"
        for family in families
    ]


def _slice(plan: Plan, service: ServicePlan, family: str, pods: tuple[PodPlan, ...]) -> KubeObject:
    endpoints = []
    for pod in pods:
        if pod.ref not in service.workloads:
            continue
        addresses = [ip for ip in pod.ips if _family(ip) == family]
        if not addresses:
            continue
        endpoint: dict[str, Any] = {
            "addresses": addresses[:1],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": pod.node,
            "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name},
        }
        if pod.hostname and pod.subdomain == service.name:
            endpoint["hostname"] = pod.hostname
        endpoints.append(endpoint)
    seed = f"{plan.topology.name}/{service.namespace}/{service.name}/{family}"
    name = f"{service.name[:57]}-{name_suffix(seed, 5)}"
    body = {
        "metadata": {
            "name": name,
            "namespace": service.namespace,
            "labels": {SERVICE_NAME_LABEL: service.name, MANAGED_BY_LABEL: MANAGER},
        },
        "addressType": family,
        "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in service.ports],
        "endpoints": endpoints,
    }
    owner = ObjectRef("Service", service.namespace, service.name)
    return KubeObject(ObjectRef("EndpointSlice", service.namespace, name), body, owner)


# --- churn ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChurnChanges:
    """What one churn step changes in the API server, in this order."""

    delete: ObjectRef
    """The victim Pod (deleted at once, as a kubelet confirms a deletion)."""
    create: tuple[KubeObject, ...]
    """The replacement's controllers (some may exist already) and the replacement Pod."""
    slices: tuple[KubeObject, ...]
    """The EndpointSlices whose endpoints change."""


def churn_changes(plan: Plan, index: int, now: float) -> ChurnChanges:
    """Churn step ``index`` as API changes: the victim goes, the replacement comes."""
    step = plan.churn[index]
    create: list[KubeObject] = []
    if step.replacement is not None:
        create = [*pod_controllers(plan, step.replacement), pod_object(plan, step.replacement, now)]
    before = {s.ref: s for s in endpoint_slices(plan, plan.pods_in_phase(index))}
    after = endpoint_slices(plan, plan.pods_in_phase(index + 1))
    changed = tuple(s for s in after if s.body != before[s.ref].body)
    victim = ObjectRef("Pod", step.victim.namespace, step.victim.name)
    return ChurnChanges(victim, tuple(create), changed)


def label_keys(plan: Plan) -> tuple[str, ...]:
    """The label keys the topology gives its pods: what the watcher should keep, so that
    it publishes the labels the inventory file carries (``callmap watch --label``)."""
    keys = dict.fromkeys(key for pod in plan.all_pods for key in pod.labels)
    return tuple(keys)
