"""The inventory file: entries shaped exactly like the wire records."""

from __future__ import annotations

import msgspec
import yaml
from labplans import bundled

from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity
from lab.inventory import PodLife, inventory_document, inventory_yaml


def _document(name: str = "shop", deleted: bool = False) -> dict[str, object]:
    layout = bundled(name)
    lives = [PodLife(pod, created=100.0 + i) for i, pod in enumerate(layout.pods)]
    if deleted:
        step = layout.churn[0]
        lives = [PodLife(x.pod, x.created, 130.0 if x.pod == step.victim else None) for x in lives]
        assert step.replacement is not None
        lives.append(PodLife(step.replacement, created=130.0))
    return inventory_document(layout, lives)


def test_top_level_keys_and_cluster() -> None:
    document = _document()
    assert list(document) == ["cluster", "pods", "services", "nodes"]
    assert document["cluster"] == "shop"


def test_every_entry_decodes_as_its_wire_record() -> None:
    document = _document()
    for key, record in (
        ("pods", PodIdentity),
        ("services", ServiceIdentity),
        ("nodes", NodeIdentity),
    ):
        for entry in document[key]:  # type: ignore[attr-defined]
            msgspec.convert({**entry, "cluster": "shop"}, record)


def test_pods_carry_workload_labels_node_and_ips() -> None:
    pods = _document()["pods"]
    redis = next(p for p in pods if p["name"] == "redis-cart-0")  # type: ignore[index, attr-defined]
    assert redis["workload"] == {"kind": "StatefulSet", "name": "redis-cart"}
    assert redis["labels"] == {"app": "redis-cart"}
    assert set(redis) == {
        "uid",
        "namespace",
        "name",
        "ips",
        "node",
        "host_network",
        "workload",
        "labels",
        "created",
        "deleted",
        "ips_since",
        "hostname",
        "subdomain",
    }
    assert (redis["hostname"], redis["subdomain"]) == (None, None)  # behind no headless service
    assert redis["ips_since"] == redis["created"]  # a lab pod is made with its address


def test_services_name_their_workloads_and_type() -> None:
    services = {s["name"]: s for s in _document()["services"]}  # type: ignore[attr-defined]
    assert services["cartservice"]["workloads"] == [
        {"namespace": "shop", "kind": "Deployment", "name": "cartservice"}
    ]
    assert services["stripe"]["type"] == "ExternalName"
    assert services["stripe"]["external_name"] == "api.stripe.com"
    assert services["kube-dns"]["ports"] == [  # the pods listen on the service's port
        {"port": 53, "protocol": "UDP", "name": "dns", "target_port": 53},
        {"port": 53, "protocol": "TCP", "name": "dns-tcp", "target_port": 53},
    ]


def test_churn_keeps_the_deleted_pod_with_its_deletion_time_and_adds_the_new_holder() -> None:
    pods = _document("churn", deleted=True)["pods"]
    same_ip = [p for p in pods if p["ips"] == ["10.244.0.4"]]  # type: ignore[index, attr-defined]
    assert [(p["workload"]["name"], p["deleted"]) for p in same_ip] == [
        ("cartservice", 130.0),
        ("emailservice", None),
    ]


def test_a_service_names_only_workloads_with_a_live_pod_as_endpoint_slices_do() -> None:
    before = {s["name"]: s for s in _document("churn")["services"]}  # type: ignore[attr-defined]
    after = {s["name"]: s for s in _document("churn", deleted=True)["services"]}  # type: ignore[attr-defined]
    assert [w["name"] for w in before["cartservice"]["workloads"]] == ["cartservice"]
    assert after["cartservice"]["workloads"] == []  # its only pod was deleted
    assert [w["name"] for w in after["emailservice"]["workloads"]] == ["emailservice"]


def test_the_yaml_reads_back_to_the_same_document() -> None:
    document = _document("two-nodes")
    assert yaml.safe_load(inventory_yaml(document)) == document


def test_statefulset_pods_behind_a_headless_service_carry_hostname_and_subdomain() -> None:
    pods = _document("statefulset")["pods"]
    named = [p for p in pods if p["hostname"]]  # type: ignore[index, attr-defined]
    assert named, "the statefulset lab has pods named under a headless service"
    for pod in named:
        assert pod["hostname"] == pod["name"]  # type: ignore[index]
        assert pod["subdomain"]  # type: ignore[index]


def test_a_service_whose_workloads_changed_says_since_when() -> None:
    services = {s["name"]: s for s in _document("churn", deleted=True)["services"]}  # type: ignore[attr-defined]
    changed = [s for s in services.values() if s["workloads_since"] is not None]  # type: ignore[index]
    assert [s["name"] for s in changed] == ["cartservice"]  # type: ignore[index]
    assert services["cartservice"]["workloads_since"] == 130.0
    assert services["cartservice"]["workloads"] == []


def test_a_pending_pod_is_listed_without_ips_and_then_holds_them_from_when_it_got_them() -> None:
    layout = bundled("churn")
    step = layout.churn[0]
    assert step.replacement is not None
    lives = [PodLife(pod, created=100.0) for pod in layout.pods]
    waiting = inventory_document(layout, [*lives, PodLife(step.replacement, 110.0, pending=True)])
    (pending,) = [p for p in waiting["pods"] if p["name"] == step.replacement.name]  # type: ignore[index, attr-defined]
    assert (pending["ips"], pending["ips_since"], pending["created"]) == ([], None, 110.0)
    got = PodLife(step.replacement, 110.0, ips_since=130.0)
    (holder,) = [
        p
        for p in inventory_document(layout, [*lives, got])["pods"]  # type: ignore[attr-defined]
        if p["name"] == step.replacement.name
    ]
    assert (holder["ips"], holder["ips_since"]) == (["10.244.0.4"], 130.0)
