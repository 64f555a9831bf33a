"""Slimming keeps exactly what the records need, and names the field when an object is bad."""

from __future__ import annotations

import pytest
from helpers.apiobjects import endpoint_slice, node, owner, pod, service

from callmap.wire import ServicePort
from watch.interning import Shared
from watch.objects import (
    BadObject,
    OwnerRef,
    slim_node,
    slim_owner,
    slim_pod,
    slim_service,
    slim_slice,
)
from watch.options import LabelPolicy

POLICY = LabelPolicy()


def test_a_pod_keeps_its_identity_ips_node_owner_and_creation_time() -> None:
    rs = owner("ReplicaSet", "frontend-7d9f", "rs-1")
    slim = slim_pod(pod("frontend-1", ips=("10.1.0.10", "fd00::a"), owners=[rs]), POLICY)
    assert (slim.uid, slim.namespace, slim.name) == ("uid-shop-frontend-1", "shop", "frontend-1")
    assert slim.ips == ("10.1.0.10", "fd00::a")
    assert slim.node == "node-a" and slim.host_network is False
    assert slim.owner == OwnerRef(group="apps", kind="ReplicaSet", name="frontend-7d9f", uid="rs-1")
    assert slim.created == 1714564800.0
    assert slim.finished is False and slim.workload_name is None


def test_pod_ips_are_canonical_and_a_lone_pod_ip_counts() -> None:
    obj = pod("a", ips=("::ffff:10.1.0.10", "FD00:0:0::A"))
    assert slim_pod(obj, POLICY).ips == ("10.1.0.10", "fd00::a")
    del obj["status"]["podIPs"]
    assert slim_pod(obj, POLICY).ips == ("10.1.0.10",)


def test_a_pending_pod_has_no_ips_and_no_node() -> None:
    slim = slim_pod(pod("pending", ips=(), node=None, phase="Pending"), POLICY)
    assert slim.ips == () and slim.node is None


def test_a_host_network_pod_says_so() -> None:
    assert slim_pod(pod("proxy", ips=("192.168.5.10",), host_network=True), POLICY).host_network


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_pod_is_marked_finished(phase: str) -> None:
    assert slim_pod(pod("job-1", phase=phase), POLICY).finished


def test_the_controller_owner_wins_over_other_owners() -> None:
    other = {**owner("ConfigMap", "cm", "cm-1", "v1"), "controller": False}
    ss = owner("StatefulSet", "db", "ss-1")
    assert slim_pod(pod("db-0", owners=[other, ss]), POLICY).owner == OwnerRef(
        group="apps", kind="StatefulSet", name="db", uid="ss-1"
    )


def test_the_workload_annotation_is_kept() -> None:
    slim = slim_pod(pod("x", annotations={"callmap.io/workload": "checkout"}), POLICY)
    assert slim.workload_name == "checkout"


def test_only_a_bounded_subset_of_labels_travels() -> None:
    labels = {
        "app": "web",
        "pod-template-hash": "7d9f",  # churns on every rollout: never kept
        "app.kubernetes.io/name": "web",
        "team": "shop",
        "version": "x" * 500,
    }
    policy = LabelPolicy(keys=("app", "app.kubernetes.io/", "version"), max_labels=3)
    slim = slim_pod(pod("web-1", labels=labels), policy)
    assert slim.labels == {"app": "web", "app.kubernetes.io/name": "web", "version": "x" * 256}
    assert slim_pod(pod("web-1", labels=labels), LabelPolicy(max_labels=1)).labels == {"app": "web"}


def test_what_pods_of_one_replicaset_have_in_common_is_one_object() -> None:
    rs = owner("ReplicaSet", "web-7d9f", "rs-shared")
    a = slim_pod(
        pod("a", namespace="".join(["sh", "op"]), owners=[rs], labels={"app": "w"}), POLICY
    )
    b = slim_pod(
        pod("b", namespace="".join(["sho", "p"]), owners=[rs], labels={"app": "w"}), POLICY
    )
    assert a.namespace is b.namespace and a.node is b.node
    assert a.owner is b.owner and a.labels is b.labels


def test_a_shared_table_stays_bounded() -> None:
    table: Shared[int, list[int]] = Shared(limit=2)
    first = table.get(1, lambda: [1])
    assert table.get(1, lambda: [1]) is first
    table.get(2, lambda: [2])
    table.get(3, lambda: [3])  # full: starts over
    assert table.get(1, lambda: [1]) is not first


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda o: o["metadata"].pop("uid"), "metadata.uid"),
        (lambda o: o["metadata"].pop("namespace"), "metadata.namespace"),
        (lambda o: o.update(metadata="nope"), "metadata"),
        (lambda o: o["status"].update(podIPs=[{"ip": "10.1.0.300"}]), "status.podIPs[0].ip"),
        (lambda o: o["status"].update(podIPs="10.1.0.1"), "status.podIPs"),
        (
            lambda o: o["metadata"].update(creationTimestamp="yesterday"),
            "metadata.creationTimestamp",
        ),
        (
            lambda o: o["metadata"]["ownerReferences"][0].pop("uid"),
            "metadata.ownerReferences[0].uid",
        ),
        (lambda o: o["spec"].update(nodeName=7), "spec.nodeName"),
    ],
)
def test_a_bad_pod_raises_naming_the_field(damage, field: str) -> None:  # type: ignore[no-untyped-def]
    obj = pod("bad", owners=[owner("ReplicaSet", "rs", "rs-1")])
    damage(obj)
    with pytest.raises(BadObject) as raised:
        slim_pod(obj, POLICY)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("spec_type", "cluster_ips", "expected"),
    [
        ("ClusterIP", ("10.96.4.2", "fd00:96::2"), "ClusterIP"),
        ("ClusterIP", ("None",), "Headless"),
        ("NodePort", ("10.96.4.3",), "NodePort"),
        ("LoadBalancer", ("10.96.4.4",), "LoadBalancer"),
    ],
)
def test_service_types_and_every_cluster_ip(
    spec_type: str, cluster_ips: tuple[str, ...], expected: str
) -> None:
    slim = slim_service(service("cart", type=spec_type, cluster_ips=cluster_ips))
    assert slim.type == expected
    assert slim.cluster_ips == tuple(ip for ip in cluster_ips if ip != "None")


def test_an_external_name_service_keeps_its_target_and_no_ips() -> None:
    slim = slim_service(
        service("stripe", type="ExternalName", cluster_ips=(), external_name="API.Stripe.com.")
    )
    assert (slim.type, slim.external_name, slim.cluster_ips) == (
        "ExternalName",
        "api.stripe.com",
        (),
    )


def test_service_ports_keep_names_protocols_target_and_node_ports() -> None:
    ports = [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080},
        {"port": 53, "protocol": "UDP", "targetPort": 5353},
    ]
    slim = slim_service(service("web", type="NodePort", ports=ports))
    assert slim.ports == (
        ServicePort(port=80, protocol="TCP", name="http", target_port="http", node_port=30080),
        ServicePort(port=53, protocol="UDP", target_port=5353),
    )


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda o: o["spec"].update(type="Weird"), "spec.type"),
        (lambda o: o["spec"].update(ports=[{"name": "p"}]), "spec.ports[0].port"),
        (lambda o: o["spec"].update(clusterIPs=["10.96.0.999"]), "spec.clusterIPs[0]"),
        (lambda o: o["spec"].update(type="ExternalName"), "spec.externalName"),
    ],
)
def test_a_bad_service_raises_naming_the_field(damage, field: str) -> None:  # type: ignore[no-untyped-def]
    obj = service("bad")
    damage(obj)
    with pytest.raises(BadObject) as raised:
        slim_service(obj)
    assert raised.value.field == field


def test_a_slice_names_its_service_and_every_pod_ready_or_not() -> None:
    obj = endpoint_slice("cart-abc", "cart", ["cart-1", "cart-2", "cart-1"])
    obj["endpoints"].append({"addresses": ["192.0.2.1"]})  # no pod behind it: not a workload
    slim = slim_slice(obj)
    assert slim.service == "shop/cart" and slim.key == "shop/cart-abc"
    assert slim.pods == (("shop", "cart-1"), ("shop", "cart-2"))


def test_a_slice_without_a_service_label_belongs_to_no_service() -> None:
    assert slim_slice(endpoint_slice("loose", None, ["a"])).service is None


def test_a_node_keeps_its_internal_and_external_ips_only() -> None:
    obj = node(
        "node-a",
        ("InternalIP", "192.168.5.10"),
        ("InternalIP", "fd00:5::10"),
        ("ExternalIP", "203.0.113.7"),
        ("Hostname", "node-a"),
        ("InternalDNS", "node-a.internal"),
    )
    assert slim_node(obj).ips == ("192.168.5.10", "fd00:5::10", "203.0.113.7")


def test_an_owner_keeps_its_own_controller() -> None:
    deployment = owner("Deployment", "frontend", "d-1")
    obj = {"metadata": {"name": "frontend-7d9f", "uid": "rs-1", "ownerReferences": [deployment]}}
    slim = slim_owner(obj, "ReplicaSet")
    assert (slim.uid, slim.kind, slim.name) == ("rs-1", "ReplicaSet", "frontend-7d9f")
    assert slim.owner == OwnerRef(group="apps", kind="Deployment", name="frontend", uid="d-1")
