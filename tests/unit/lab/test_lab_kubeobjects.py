"""The lab as Kubernetes manifests: what controllers and kubelets would have written."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.labplans import bundled, plan_of

from lab.addressing import Plan
from lab.kubeobjects import (
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    WORKLOAD_LABEL,
    KubeObject,
    ObjectRef,
    churn_changes,
    cluster_objects,
    label_keys,
    with_uids,
)

# Every workload kind, host network, a headless StatefulSet, a service over two
# workloads, an ExternalName, two nodes, dual stack.
EVERY_KIND = """
name: kinds
nodes: [node-a, node-b]
dual_stack: true
workloads:
  - {namespace: web, name: front, replicas: 2, labels: {app: front, tier: web},
     service: {name: front, ports: [80]}}
  - {namespace: web, name: reviews-v1, labels: {app: reviews, version: v1}}
  - {namespace: web, name: reviews-v2, labels: {app: reviews, version: v2}}
  - {namespace: data, name: db, kind: StatefulSet, replicas: 2,
     service: {name: db, ports: [5432], headless: true}}
  - {namespace: ops, name: agent, kind: DaemonSet, host_network: true}
  - {namespace: ops, name: backup, kind: CronJob, replicas: 2}
  - {namespace: ops, name: migrate, kind: Job, replicas: 2}
  - {namespace: ops, name: toolbox, kind: Pod, labels: {}}
services:
  - {namespace: web, name: reviews, ports: [9080], selects: [reviews-v1, reviews-v2]}
  - {namespace: web, name: pay, external_name: api.stripe.com}
externals:
  - {name: api.stripe.com, ips: [203.0.113.10], ports: [443]}
calls:
  - {from: web/front, to: reviews, port: 9080}
  - {from: web/front, to: db-1.db.data, port: 5432}
  - {from: ops/backup, to: db.data, port: 5432}
  - {from: ops/migrate, to: db.data, port: 5432}
  - {from: ops/toolbox, to: pay.web, port: 443}
  - {from: ops/agent, to: front.web, port: 80}
"""


@pytest.fixture(scope="module")
def kinds() -> Plan:
    return plan_of(EVERY_KIND)


def _objects(layout: Plan) -> dict[ObjectRef, KubeObject]:
    return {obj.ref: obj for obj in cluster_objects(layout, layout.pods, now=1_700_000_000.0)}


def _pods(layout: Plan) -> dict[str, KubeObject]:
    return {o.ref.name: o for o in _objects(layout).values() if o.ref.kind == "Pod"}


def _owners(objects: dict[ObjectRef, KubeObject], obj: KubeObject) -> list[str]:
    """The ownership chain of ``obj`` up to its root, as ``Kind/name``."""
    chain = []
    while obj.owner is not None:
        obj = objects[obj.owner]
        chain.append(f"{obj.ref.kind}/{obj.ref.name}")
    return chain


def _labels(obj: KubeObject) -> dict[str, str]:
    return dict(obj.body["metadata"]["labels"])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_objects_come_in_creation_order_owners_first(kinds: Plan) -> None:
    objects = cluster_objects(kinds, kinds.pods, now=0.0)
    order = [obj.ref.kind for obj in objects]
    assert order[: order.count("Namespace")] == ["Namespace"] * order.count("Namespace")
    assert order.index("Node") < order.index("Deployment") < order.index("Pod")
    assert max(i for i, k in enumerate(order) if k == "Pod") < order.index("Service")
    assert order[-1] == "EndpointSlice"
    seen: set[ObjectRef] = set()
    for obj in objects:
        assert obj.owner is None or obj.owner in seen, f"{obj.ref} before its owner"
        seen.add(obj.ref)
    assert len(seen) == len(objects)  # no object twice
    namespaces = {o.ref.name for o in objects if o.ref.kind == "Namespace"}
    assert namespaces == {"kube-system", "web", "data", "ops"}
    assert all(o.ref.namespace in namespaces for o in objects if o.ref.namespace)


def test_every_pod_is_owned_as_its_workload_kind_says(kinds: Plan) -> None:
    objects = _objects(kinds)
    chains = {
        pod.ref.name.rsplit("-", 1)[0]: _owners(objects, pod)
        for pod in objects.values()
        if pod.ref.kind == "Pod"
    }
    front = next(n for n in chains if n.startswith("front-"))
    assert chains[front] == [f"ReplicaSet/{front}", "Deployment/front"]
    assert chains["db"] == ["StatefulSet/db"]  # db-0, db-1
    assert chains["agent"] == ["DaemonSet/agent"]
    assert chains["migrate"] == ["Job/migrate"]
    assert chains["backup-28000000"] == ["Job/backup-28000000", "CronJob/backup"]
    assert chains["backup-28000001"] == ["Job/backup-28000001", "CronJob/backup"]
    assert _owners(objects, objects[ObjectRef("Pod", "ops", "toolbox")]) == []
    coredns = next(o for o in objects.values() if o.ref.name.startswith("coredns-"))
    assert _owners(objects, coredns)[-1] == "Deployment/coredns"


def test_controllers_select_their_pods_and_pods_carry_the_controllers_labels(kinds: Plan) -> None:
    objects = _objects(kinds)
    for pod in (o for o in objects.values() if o.ref.kind == "Pod" and o.owner):
        labels = _labels(pod)
        owner = objects[pod.owner]  # type: ignore[index]
        spec = owner.body["spec"]
        if owner.ref.kind == "Job":
            assert labels["batch.kubernetes.io/job-name"] == owner.ref.name
            assert "selector" not in spec  # the API server generates a Job's selector
            continue
        assert _selects(spec["selector"]["matchLabels"], labels)
        assert _selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        if owner.ref.kind == "ReplicaSet":
            workload = labels[WORKLOAD_LABEL]
            assert owner.ref.name == f"{workload}-{labels['pod-template-hash']}"
            assert pod.ref.name.startswith(owner.ref.name + "-")
    db0 = objects[ObjectRef("Pod", "data", "db-0")]
    assert _labels(db0)["statefulset.kubernetes.io/pod-name"] == "db-0"
    assert _labels(db0)[WORKLOAD_LABEL] == "db" and _labels(db0)["app"] == "db"
    deployment = objects[ObjectRef("Deployment", "web", "front")].body["spec"]
    assert deployment["replicas"] == 2
    assert objects[ObjectRef("Job", "ops", "migrate")].body["spec"]["parallelism"] == 2
    cron = objects[ObjectRef("CronJob", "ops", "backup")].body["spec"]
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_pods_run_on_their_node_with_their_addresses_in_the_status(kinds: Plan) -> None:
    pods = _pods(kinds)
    for plan_pod in kinds.pods:
        pod = pods[plan_pod.name]
        spec, status = pod.body["spec"], pod.status
        assert status is not None
        assert spec["nodeName"] == plan_pod.node
        assert status["phase"] == "Running"
        assert status["podIP"] == plan_pod.ips[0]
        assert [entry["ip"] for entry in status["podIPs"]] == list(plan_pod.ips)
        assert status["hostIP"] == kinds.node(plan_pod.node).ipv4
        assert _labels(pod).items() >= plan_pod.labels.items()
    agent = next(p for p in kinds.pods if p.ref == "ops/agent")
    spec = pods[agent.name].body["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert [e["ip"] for e in pods[agent.name].status["podIPs"]] == list(  # type: ignore[index]
        kinds.node(agent.node).ips
    )
    db1 = pods["db-1"].body["spec"]
    assert (db1["hostname"], db1["subdomain"]) == ("db-1", "db")
    assert "hostname" not in pods["toolbox"].body["spec"]
    front = next(p for p in pods.values() if p.ref.name.startswith("front-"))
    ports = front.body["spec"]["containers"][0]["ports"]
    assert {"containerPort": 80, "protocol": "TCP"} in ports  # its service's port
    job = next(p for p in pods.values() if p.ref.name.startswith("migrate-"))
    assert job.body["spec"]["restartPolicy"] == "Never"


def test_services_keep_the_plans_cluster_ips_ports_and_types(kinds: Plan) -> None:
    objects = _objects(kinds)
    front = objects[ObjectRef("Service", "web", "front")].body["spec"]
    planned = kinds.service("web", "front")
    assert planned is not None
    assert front["clusterIP"] == planned.cluster_ips[0]
    assert front["clusterIPs"] == list(planned.cluster_ips) and len(planned.cluster_ips) == 2
    assert front["ipFamilies"] == ["IPv4", "IPv6"]
    assert front["ipFamilyPolicy"] == "RequireDualStack"
    assert front["ports"] == [{"name": "tcp-80", "port": 80, "protocol": "TCP", "targetPort": 80}]
    assert front["selector"] == {"app": "front", "tier": "web"}
    db = objects[ObjectRef("Service", "data", "db")].body["spec"]
    assert db["clusterIP"] == "None"
    reviews = objects[ObjectRef("Service", "web", "reviews")].body["spec"]
    assert reviews["selector"] == {"app": "reviews"}  # what both workloads share
    pay = objects[ObjectRef("Service", "web", "pay")].body["spec"]
    assert pay == {"type": "ExternalName", "externalName": "api.stripe.com"}
    dns = objects[ObjectRef("Service", "kube-system", "kube-dns")].body["spec"]
    assert dns["clusterIP"] == "10.96.0.10"
    assert [(p["port"], p["protocol"]) for p in dns["ports"]] == [(53, "UDP"), (53, "TCP")]


def test_single_stack_services_and_a_selector_of_nothing_shared() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: one}, {namespace: a, name: two},"
        " {namespace: a, name: c, labels: {}, service: {name: c, ports: [80]}}]\n"
        "services: [{namespace: a, name: both, ports: [80], selects: [one, two]}]\n"
        "calls: [{from: a/c, to: both, port: 80}, {from: a/one, to: c, port: 80}]"
    )
    objects = _objects(layout)
    both = objects[ObjectRef("Service", "a", "both")].body["spec"]
    assert both["ipFamilyPolicy"] == "SingleStack" and both["ipFamilies"] == ["IPv4"]
    assert "selector" not in both  # {app: one} and {app: two} share nothing
    c = objects[ObjectRef("Service", "a", "c")].body["spec"]
    assert c["selector"] == {WORKLOAD_LABEL: "c"}  # a workload without labels


def test_nodes_report_their_internal_addresses(kinds: Plan) -> None:
    node = _objects(kinds)[ObjectRef("Node", None, "node-b")]
    assert node.status is not None
    internal = [a["address"] for a in node.status["addresses"] if a["type"] == "InternalIP"]
    assert internal == list(kinds.node("node-b").ips)
    assert node.body["spec"]["podCIDRs"] == ["10.244.1.0/24", "fd00:244::1:0/112"]


def test_endpoint_slices_name_the_live_pods_behind_each_service_per_family(kinds: Plan) -> None:
    slices = [o for o in _objects(kinds).values() if o.ref.kind == "EndpointSlice"]
    by_service: dict[str, list[KubeObject]] = {}
    for endpoint_slice in slices:
        labels = _labels(endpoint_slice)
        assert labels[MANAGED_BY_LABEL] == "lab.callmap.io"
        assert endpoint_slice.owner == ObjectRef(
            "Service", endpoint_slice.ref.namespace, labels[SERVICE_NAME_LABEL]
        )
        by_service.setdefault(labels[SERVICE_NAME_LABEL], []).append(endpoint_slice)
    assert "pay" not in by_service  # an ExternalName has no endpoints
    reviews = by_service["reviews"]
    assert sorted(s.body["addressType"] for s in reviews) == ["IPv4", "IPv6"]
    targets = {e["targetRef"]["name"] for e in reviews[0].body["endpoints"]}
    assert {name.split("-")[1] for name in targets} == {"v1", "v2"}
    db = next(s for s in by_service["db"] if s.body["addressType"] == "IPv6")
    endpoints = {e["targetRef"]["name"]: e for e in db.body["endpoints"]}
    assert endpoints["db-0"]["hostname"] == "db-0"
    db0 = next(p for p in kinds.pods if p.name == "db-0")
    assert endpoints["db-0"]["addresses"] == [db0.ips[1]]
    assert endpoints["db-0"]["nodeName"] == db0.node
    assert endpoints["db-0"]["conditions"]["ready"] is True


def test_uids_of_owners_and_target_pods_are_filled_in_without_touching_the_manifest() -> None:
    layout = bundled("shop")
    objects = _objects(layout)
    endpoint_slice = next(
        o for o in objects.values() if o.ref.kind == "EndpointSlice" and "cartservice" in o.ref.name
    )
    uids = {ref: f"uid-{ref.kind}-{ref.name}" for ref in objects}
    body: dict[str, Any] = with_uids(endpoint_slice, uids.__getitem__)
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "cartservice",
            "uid": "uid-Service-cartservice",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    target = body["endpoints"][0]["targetRef"]
    assert target["uid"] == f"uid-Pod-{target['name']}"
    assert "uid" not in endpoint_slice.body["endpoints"][0]["targetRef"]
    assert "ownerReferences" not in endpoint_slice.body["metadata"]


def test_churn_deletes_the_victim_creates_its_replacement_and_changes_only_its_slices() -> None:
    layout = bundled("churn")
    changes = churn_changes(layout, 0, now=0.0)
    step = layout.churn[0]
    assert step.replacement is not None
    assert changes.delete == ObjectRef("Pod", "shop", step.victim.name)
    pod = changes.create[-1]
    assert pod.ref == ObjectRef("Pod", "shop", step.replacement.name)
    assert pod.status is not None and pod.status["podIP"] == step.victim.ips[0]
    assert [o.ref.kind for o in changes.create] == ["Deployment", "ReplicaSet", "Pod"]
    changed = {_labels(s)[SERVICE_NAME_LABEL]: s.body["endpoints"] for s in changes.slices}
    assert changed["cartservice"] == []  # its only pod is gone
    assert {e["targetRef"]["name"] for e in changed["emailservice"]} == {
        p.name for p in layout.pods_in_phase(1) if p.ref == "shop/emailservice"
    }
    assert set(changed) == {"cartservice", "emailservice"}


def test_a_cronjob_pod_replacement_comes_with_a_job_of_its_own() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c}, {namespace: a, name: old, ports: [80]},"
        " {namespace: a, name: batch, kind: CronJob, ports: [80]}]\n"
        "calls: [{from: a/c, to: 10.244.0.4, port: 80}]\n"
        "churn: [{at: 5, delete: a/old, ip_to: a/batch}]"
    )
    changes = churn_changes(layout, 0, now=0.0)
    assert [(o.ref.kind, o.ref.name) for o in changes.create] == [
        ("CronJob", "batch"),
        ("Job", "batch-28000001"),
        ("Pod", changes.create[-1].ref.name),
    ]
    assert changes.create[-1].owner == ObjectRef("Job", "a", "batch-28000001")


def test_object_paths() -> None:
    assert ObjectRef("Pod", "a", "p").path == "/api/v1/namespaces/a/pods/p"
    assert ObjectRef("Node", None, "n").collection == "/api/v1/nodes"
    assert ObjectRef("ReplicaSet", "a", "r").path == "/apis/apps/v1/namespaces/a/replicasets/r"
    assert ObjectRef("CronJob", "a", "c").collection == "/apis/batch/v1/namespaces/a/cronjobs"
    assert (
        ObjectRef("EndpointSlice", "a", "s").collection
        == "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices"
    )
    assert str(ObjectRef("Pod", "a", "p")) == "Pod a/p"


def test_the_watcher_keeps_exactly_the_label_keys_the_topology_uses(kinds: Plan) -> None:
    assert set(label_keys(kinds)) == {"app", "tier", "version", "k8s-app"}


def test_udp_ports_are_udp_in_services_slices_and_containers() -> None:
    layout = bundled("udp")
    objects = _objects(layout)
    service = objects[ObjectRef("Service", "metrics", "statsd")].body["spec"]
    assert service["ports"] == [
        {"name": "tcp-9102", "port": 9102, "protocol": "TCP", "targetPort": 9102},
        {"name": "udp-8125", "port": 8125, "protocol": "UDP", "targetPort": 8125},
    ]
    slices = [o for o in objects.values() if o.ref.kind == "EndpointSlice"]
    statsd = next(o for o in slices if o.ref.name.startswith("statsd"))
    assert [(p["port"], p["protocol"]) for p in statsd.body["ports"]] == [
        (9102, "TCP"),
        (8125, "UDP"),
    ]
    pod = next(o for ref, o in objects.items() if ref.kind == "Pod" and ref.namespace == "metrics")
    assert pod.body["spec"]["containers"][0]["ports"] == [
        {"containerPort": 9102, "protocol": "TCP"},
        {"containerPort": 6831, "protocol": "UDP"},  # the tracer calls the pod's address
        {"containerPort": 8125, "protocol": "UDP"},
    ]
