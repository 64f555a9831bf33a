"""The lab's inventory: the identities a cluster would publish for the plan, in the one format."""

from __future__ import annotations

from helpers.labplans import bundled

from callmap.inventory import InventoryRecords, inventory_records, load_inventory
from callmap.wire import ServiceIdentity, ServicePort, ServiceWorkload, WorkloadRef
from lab.addressing import Plan
from lab.inventory import HEADER, PodLife, inventory_yaml, lab_records


def _lives(name: str = "shop", deleted: bool = False) -> tuple[Plan, list[PodLife]]:
    layout = bundled(name)
    lives = [PodLife(pod, created=100.0 + i) for i, pod in enumerate(layout.pods)]
    if deleted:
        step = layout.churn[0]
        lives = [PodLife(x.pod, x.created, 130.0 if x.pod == step.victim else None) for x in lives]
        assert step.replacement is not None
        lives.append(PodLife(step.replacement, created=130.0))
    return layout, lives


def _records(name: str = "shop", deleted: bool = False) -> InventoryRecords:
    layout, lives = _lives(name, deleted)
    return lab_records(layout, lives)


def _services(name: str = "shop", deleted: bool = False) -> dict[str, ServiceIdentity]:
    return {s.name: s for s in _records(name, deleted).services}


def test_every_record_carries_the_labs_cluster() -> None:
    records = _records()
    clusters = [
        *(p.cluster for p in records.pods),
        *(s.cluster for s in records.services),
        *(n.cluster for n in records.nodes),
    ]
    assert clusters and set(clusters) == {"shop"}


def test_pods_carry_workload_labels_node_and_ips() -> None:
    redis = next(p for p in _records().pods if p.name == "redis-cart-0")
    assert redis.workload == WorkloadRef(kind="StatefulSet", name="redis-cart")
    assert redis.labels == {"app": "redis-cart"}
    assert redis.ips and redis.node
    assert (redis.hostname, redis.subdomain) == (None, None)  # behind no headless service
    assert redis.ips_since == redis.created  # a lab pod is made with its address


def test_services_name_their_workloads_and_type() -> None:
    services = _services()
    assert services["cartservice"].workloads == (
        ServiceWorkload(namespace="shop", kind="Deployment", name="cartservice"),
    )
    assert services["stripe"].type == "ExternalName"
    assert services["stripe"].external_name == "api.stripe.com"
    assert services["kube-dns"].ports == (  # the pods listen on the service's port
        ServicePort(port=53, protocol="UDP", name="dns", target_port=53),
        ServicePort(port=53, protocol="TCP", name="dns-tcp", target_port=53),
    )


def test_churn_keeps_the_deleted_pod_with_its_deletion_time_and_adds_the_new_holder() -> None:
    pods = _records("churn", deleted=True).pods
    same_ip = [p for p in pods if p.ips == ("10.244.0.4",)]
    assert [(p.workload.name, p.deleted) for p in same_ip] == [
        ("cartservice", 130.0),
        ("emailservice", None),
    ]


def test_a_service_names_only_workloads_with_a_live_pod_as_endpoint_slices_do() -> None:
    before = _services("churn")
    after = _services("churn", deleted=True)
    assert [w.name for w in before["cartservice"].workloads] == ["cartservice"]
    assert after["cartservice"].workloads == ()  # its only pod was deleted
    assert [w.name for w in after["emailservice"].workloads] == ["emailservice"]


def test_the_file_reads_back_through_the_inventory_format_to_the_same_records() -> None:
    for name, deleted in (("two-nodes", False), ("churn", True), ("statefulset", False)):
        layout, lives = _lives(name, deleted)
        text = inventory_yaml(layout, lives)
        assert text.startswith(HEADER)
        read = inventory_records(load_inventory(text), layout.topology.cluster)
        written = lab_records(layout, lives)
        assert sorted(read.pods, key=lambda p: p.uid) == sorted(written.pods, key=lambda p: p.uid)
        assert sorted(read.services, key=lambda s: s.name) == sorted(
            written.services, key=lambda s: s.name
        )
        assert sorted(read.nodes, key=lambda n: n.name) == sorted(
            written.nodes, key=lambda n: n.name
        )


def test_statefulset_pods_behind_a_headless_service_carry_hostname_and_subdomain() -> None:
    named = [p for p in _records("statefulset").pods if p.hostname]
    assert named, "the statefulset lab has pods named under a headless service"
    for pod in named:
        assert pod.hostname == pod.name
        assert pod.subdomain


def test_a_service_whose_workloads_changed_says_since_when() -> None:
    services = _services("churn", deleted=True)
    changed = [s.name for s in services.values() if s.workloads_since is not None]
    assert changed == ["cartservice"]
    assert services["cartservice"].workloads_since == 130.0
    assert services["cartservice"].workloads == ()


def test_a_pending_pod_is_listed_without_ips_and_then_holds_them_from_when_it_got_them() -> None:
    layout = bundled("churn")
    step = layout.churn[0]
    assert step.replacement is not None
    lives = [PodLife(pod, created=100.0) for pod in layout.pods]
    waiting = lab_records(layout, [*lives, PodLife(step.replacement, 110.0, pending=True)])
    (pending,) = [p for p in waiting.pods if p.name == step.replacement.name]
    assert (pending.ips, pending.ips_since, pending.created) == ((), None, 110.0)
    got = PodLife(step.replacement, 110.0, ips_since=130.0)
    (holder,) = [
        p for p in lab_records(layout, [*lives, got]).pods if p.name == step.replacement.name
    ]
    assert (holder.ips, holder.ips_since) == (("10.244.0.4",), 130.0)
