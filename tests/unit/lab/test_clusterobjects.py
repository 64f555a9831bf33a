"""A topology as a real cluster's objects: what the lab applies with server-side apply."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.labplans import ON_CLUSTER, bundled, plan_of

from lab.addressing import Plan
from lab.clusteraddresses import bind_pods, literal_targets, waves
from lab.clusterlab import externals
from lab.clusterobjects import (
    JOB_COMPLETIONS,
    LAB_LABEL,
    NAME_LABEL,
    SPEC_ENV,
    WORKLOAD_LABEL,
    ClusterTarget,
    addresses_to_fill,
    caller_spec,
    cronjob_run,
    lab_objects,
    object_path,
    placeholder_namespace,
    placeholder_pod,
    service_label,
)
from lab.clusterplan import check_topology, cluster_node
from lab.errors import LabError

EVERY_KIND = """
name: kinds
nodes: [node-a, node-b, node-c]
dual_stack: true
workloads:
  - {namespace: web, name: front, replicas: 2, labels: {app: front, tier: web},
     service: {name: front, ports: [80]}}
  - {namespace: web, name: reviews-v1, labels: {app: reviews, version: v1}}
  - {namespace: web, name: reviews-v2, labels: {app: reviews, version: v2}}
  - {namespace: data, name: db, kind: StatefulSet, replicas: 2,
     service: {name: db, ports: [5432], headless: true}}
  - {namespace: data, name: cache, kind: StatefulSet, service: {name: cache, ports: [6379]}}
  - {namespace: ops, name: agent, kind: DaemonSet, host_network: true}
  - {namespace: ops, name: backup, kind: CronJob, replicas: 2, node: node-b}
  - {namespace: ops, name: migrate, kind: Job, replicas: 2, dns_tcp: true}
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
  - {from: ops/migrate, to: cache.data, port: 6379}
  - {from: ops/toolbox, to: pay.web, port: 443}
  - {from: ops/agent, to: front.web, port: 80}
  - {from: ops/toolbox, to: 198.51.100.7, port: 8443}
"""


def _target(layout: Plan, addresses: dict[str, str] | None = None) -> ClusterTarget:
    return ClusterTarget(
        lab=layout.topology.name,
        image="localhost/callmap/callmap:test",
        nodes=("node-1", "node-2"),
        host_dir="/var/lib/lab/host",
        addresses=addresses or {},
    )


@pytest.fixture(scope="module")
def kinds() -> Plan:
    return plan_of(EVERY_KIND)


def _by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["kind"], f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"): o
        for o in objects
    }


def _template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        return dict(spec["jobTemplate"]["spec"]["template"])
    if obj["kind"] == "Pod":
        return {"metadata": obj["metadata"], "spec": spec}
    return dict(spec["template"])


def _spec_of(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    spec: dict[str, Any] = json.loads(env[SPEC_ENV])
    return spec


def test_every_workload_is_a_controller_of_its_kind(kinds: Plan) -> None:
    objects = _by_kind(lab_objects(kinds, _target(kinds)))
    front = objects[("Deployment", "web/front")]["spec"]
    assert front["replicas"] == 2
    assert front["selector"] == {"matchLabels": {WORKLOAD_LABEL: "front"}}
    db = objects[("StatefulSet", "data/db")]["spec"]
    assert db["serviceName"] == "db" and db["podManagementPolicy"] == "Parallel"
    cache = objects[("StatefulSet", "data/cache")]["spec"]
    assert cache["serviceName"] == "cache"  # its own (not headless) service: no other governs it
    agent = objects[("DaemonSet", "ops/agent")]["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True and agent["dnsPolicy"] == "ClusterFirstWithHostNet"
    migrate = objects[("Job", "ops/migrate")]["spec"]
    assert (migrate["parallelism"], migrate["completions"]) == (2, JOB_COMPLETIONS)
    assert migrate["podReplacementPolicy"] == "Failed"
    assert migrate["template"]["spec"]["restartPolicy"] == "Never"
    assert migrate["template"]["spec"]["dnsConfig"] == {"options": [{"name": "use-vc"}]}
    backup = objects[("CronJob", "ops/backup")]["spec"]
    assert backup["schedule"] == "* * * * *" and backup["suspend"] is True
    assert backup["concurrencyPolicy"] == "Forbid"
    node_pin = backup["jobTemplate"]["spec"]["template"]["spec"]["nodeSelector"]
    assert node_pin == {"kubernetes.io/hostname": "node-2"}
    toolbox = objects[("Pod", "ops/toolbox")]
    assert toolbox["spec"]["restartPolicy"] == "Always"
    assert toolbox["metadata"]["labels"][WORKLOAD_LABEL] == "toolbox"
    assert ("Namespace", "/" + placeholder_namespace("kinds")) in objects


def test_a_cronjob_run_is_a_job_the_cronjob_owns(kinds: Plan) -> None:
    run = cronjob_run(kinds, _target(kinds), "ops/backup", "uid-1")
    assert run["metadata"]["name"] == "backup-28000000"
    (owner,) = run["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob",
        "backup",
        "uid-1",
        True,
    )
    assert run["spec"]["parallelism"] == 2


def test_every_object_is_labelled_and_every_pod_runs_the_caller(kinds: Plan) -> None:
    objects = lab_objects(kinds, _target(kinds))
    for obj in objects:
        assert obj["metadata"]["labels"][LAB_LABEL] == "kinds", obj["metadata"]["name"]
    for obj in objects:
        if obj["kind"] in ("Namespace", "Service"):
            continue
        template = _template(obj)
        labels = template["metadata"]["labels"]
        assert labels[NAME_LABEL] == labels[WORKLOAD_LABEL] == obj["metadata"]["name"]
        (container,) = template["spec"]["containers"]
        assert container["image"] == "localhost/callmap/callmap:test"
        assert container["imagePullPolicy"] == "Never"
        assert container["command"] == ["python", "-m", "lab.caller", "--env", SPEC_ENV]
        assert container["securityContext"]["runAsUser"] == 0
        assert template["spec"]["volumes"][0]["hostPath"]["path"] == "/var/lib/lab/host"
        spec = _spec_of(template)
        assert spec["pod"] == "$(POD_NAMESPACE)/$(POD_NAME)"
        assert spec["log"] == "/callmap-lab/logs/$(POD_NAMESPACE).$(POD_NAME).jsonl"
        assert spec["hold"] is True and spec["release_file"] == "/callmap-lab/release"
        env = [e["name"] for e in container["env"]]
        assert env.index("POD_NAME") < env.index(SPEC_ENV)  # the kubelet expands in order
    front = _spec_of(_template(_by_kind(objects)[("Deployment", "web/front")]))
    assert front["listen"] == [80]
    assert [(c["to"], c["port"]) for c in front["calls"]] == [
        ("reviews", 9080),
        ("db-1.db.data", 5432),
    ]


def test_services_select_exactly_the_pods_of_their_workloads(kinds: Plan) -> None:
    objects = lab_objects(kinds, _target(kinds))
    services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    assert "kube-dns" not in services  # the cluster has its own DNS
    assert services["reviews"]["selector"] == {service_label("reviews"): "true"}
    assert "clusterIP" not in services["reviews"]  # the cluster's own addresses
    assert services["reviews"]["ipFamilyPolicy"] == "PreferDualStack"
    assert services["reviews"]["ports"] == [
        {"name": "tcp-9080", "port": 9080, "targetPort": 9080, "protocol": "TCP"}
    ]
    assert services["db"]["clusterIP"] == "None"
    assert services["pay"] == {"type": "ExternalName", "externalName": "api.stripe.com"}
    selected = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] not in ("Namespace", "Service")
        and service_label("reviews") in _template(o)["metadata"]["labels"]
    }
    assert selected == {"reviews-v1", "reviews-v2"}
    assert all(o["kind"] != "Deployment" or o["metadata"]["name"] != "coredns" for o in objects)


def test_object_paths() -> None:
    layout = plan_of("name: p\nworkloads: [{namespace: a, name: w}]\n")
    paths = {object_path(o) for o in lab_objects(layout, _target(layout))}
    assert paths == {
        "/api/v1/namespaces/a",
        "/api/v1/namespaces/cml-p--ipam",
        "/apis/apps/v1/namespaces/a/deployments/w",
    }


def test_calls_to_plan_addresses_wait_for_the_pods_they_name() -> None:
    layout = bundled("churn")
    literals = literal_targets(layout)
    assert literals["10.244.0.4"].kind == "pod"
    cart = next(p for p in layout.pods if p.ref == "shop/cartservice")
    assert literals["10.244.0.4"].holder == cart.key
    assert waves(layout) == [
        ("shop/frontend", "shop/cartservice", "shop/emailservice"),
        ("ops/prober",),
    ]
    with pytest.raises(LabError, match="not known yet"):
        lab_objects(layout, _target(layout))
    target = _target(layout, {"10.244.0.4": "10.200.1.7"})
    prober = _by_kind(lab_objects(layout, target))[("DaemonSet", "ops/prober")]
    (call,) = _spec_of(_template(prober))["calls"]
    assert (call["to"], call["port"], call["long_lived"]) == ("10.200.1.7", 7070, True)


def test_calls_to_each_others_addresses_are_refused() -> None:
    layout = plan_of(
        "name: c\nworkloads: [{namespace: a, name: x}, {namespace: a, name: y}]\n"
        "calls: [{from: a/x, to: 10.244.0.3, port: 80}, {from: a/y, to: 10.244.0.2, port: 80},"
        " {from: a/x, to: 10.96.0.10, port: 53}, {from: a/x, to: 172.31.250.10, port: 22}]\n"
    )
    kinds = {a: t.kind for a, t in literal_targets(layout).items()}
    assert kinds == {
        "10.244.0.3": "pod",
        "10.244.0.2": "pod",
        "10.96.0.10": "service",
        "172.31.250.10": "node",
    }
    with pytest.raises(LabError, match="a/x, a/y"):
        waves(layout)


def test_what_a_cluster_cannot_hold_is_refused() -> None:
    cross = plan_of(
        "name: x\nworkloads: [{namespace: a, name: w}]\n"
        "services: [{namespace: b, name: s, ports: [80], selects: [a/w]}]\n"
    )
    with pytest.raises(LabError, match="own namespace"):
        check_topology(cross)
    system = plan_of("name: x\nworkloads: [{namespace: default, name: w}]\n")
    with pytest.raises(LabError, match="keeps out"):
        check_topology(system)
    middle = plan_of(
        "name: x\nworkloads: [{namespace: a, name: db, kind: StatefulSet, replicas: 3}]\n"
        "churn: [{at: 1, delete: a/db, pod: db-1}]\n"
    )
    with pytest.raises(LabError, match="highest ordinal"):
        check_topology(middle)
    check_topology(bundled("churn"))


def test_udp_calls_and_udp_service_ports_are_refused_naming_them() -> None:
    with pytest.raises(LabError, match=r"calls\[0\]: web/client -> statsd.metrics:8125 is a udp"):
        check_topology(bundled("udp"))
    ports = plan_of(
        "name: x\nworkloads: [{namespace: a, name: w, service: {name: s, udp_ports: [514]}}]\n"
    )
    with pytest.raises(LabError, match="service a/s: udp_ports are the netns lab's only"):
        check_topology(ports)


@pytest.mark.parametrize("name", ON_CLUSTER)
def test_every_bundled_topology_becomes_objects(name: str) -> None:
    layout = bundled(name)
    addresses = {a: "10.200.9.9" for a, t in literal_targets(layout).items() if t.kind != "other"}
    objects = lab_objects(layout, _target(layout, addresses))
    kinds = {o["kind"] for o in objects}
    assert ("Namespace" in kinds and "Service" in kinds) or not layout.topology.workloads
    assert len({object_path(o) for o in objects}) == len(objects)


def test_real_pods_stand_for_plan_pods_by_ordinal_node_or_age(kinds: Plan) -> None:
    front = [p.key for p in kinds.pods if p.ref == "web/front"]
    bound = bind_pods(kinds, "web/front", [("f-b", "node-1", 20.0), ("f-a", "node-2", 10.0)], ())
    assert bound == {front[0]: "f-a", front[1]: "f-b"}
    db = bind_pods(kinds, "data/db", [("db-1", "node-1", 1.0), ("db-0", "node-2", 2.0)], ())
    assert db == {"data/db-0": "db-0", "data/db-1": "db-1"}
    agents = [p for p in kinds.pods if p.ref == "ops/agent"]  # one per topology node: 3
    bound = bind_pods(
        kinds, "ops/agent", [("ag-2", "node-2", 1.0), ("ag-1", "node-1", 1.0)], ("node-1", "node-2")
    )
    # node-a -> node-1, node-b -> node-2, node-c folds onto node-1, whose pod is taken
    assert bound == {agents[0].key: "ag-1", agents[1].key: "ag-2"}
    assert cluster_node(kinds.topology, ("node-1", "node-2"), "node-c") == "node-1"


def test_placeholders_fill_what_is_free_of_a_node_range() -> None:
    # a /27: 32 addresses, less network, bridge (.1) and broadcast: 29 for pods
    assert addresses_to_fill("10.200.1.0/27", [], 0) == 29
    held = ["10.200.1.2", "10.200.1.3", "10.200.1.30", "10.200.2.5"]  # the last: another node
    assert addresses_to_fill("10.200.1.0/27", held, 2) == 29 - 3 - 2
    assert addresses_to_fill("10.200.1.0/29", ["10.200.1.2"], 9) == 0
    pod = placeholder_pod("churn", "node-1", 3, "img")
    assert pod["metadata"]["namespace"] == "cml-churn--ipam"
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_the_internet_answers_every_external_and_every_other_address(kinds: Plan) -> None:
    zone, ports = externals(kinds)
    assert zone == {
        "api.stripe.com": ["203.0.113.10"],
        "literal-198-51-100-7.callmap-lab.invalid": ["198.51.100.7"],
    }
    assert (
        ports["api.stripe.com"] == [443, 8443] == ports["literal-198-51-100-7.callmap-lab.invalid"]
    )


def test_a_call_to_an_unknown_plan_address_is_an_error_not_a_guess() -> None:
    layout = bundled("churn")
    prober = layout.by_workload["ops/prober"]
    with pytest.raises(LabError):
        caller_spec(layout, _target(layout), prober)
