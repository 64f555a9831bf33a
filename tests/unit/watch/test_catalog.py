"""Objects in any order, records that converge: pods, services and what backs them."""

from __future__ import annotations

from apiobjects import endpoint_slice, pod, service

from callmap.wire import PodIdentity, ServiceWorkload, WorkloadRef
from watch.catalog import Catalog
from watch.objects import slim_pod, slim_service, slim_slice
from watch.options import LabelPolicy
from watch.table import Change, IdentityTables

RETENTION = 600.0


def catalog() -> tuple[Catalog, list[Change]]:
    out: list[Change] = []
    return Catalog("test", IdentityTables(RETENTION, out.append)), out


def add_pod(cat: Catalog, name: str, workload: str, now: float = 1.0, **fields) -> None:  # type: ignore[no-untyped-def]
    cat.pod_seen(
        slim_pod(pod(name, **fields), LabelPolicy()),
        WorkloadRef(kind="Deployment", name=workload),
        now,
    )


def workloads(cat: Catalog, key: str = "shop/cart") -> tuple[ServiceWorkload, ...]:
    record = cat.tables.services.get(key)
    assert record is not None
    return record.workloads


def cart_workload(name: str = "cart") -> ServiceWorkload:
    return ServiceWorkload(namespace="shop", kind="Deployment", name=name)


def test_a_pod_record_carries_what_the_contract_says() -> None:
    cat, out = catalog()
    add_pod(cat, "cart-1", "cart", ips=("10.1.0.10", "fd00::a"), labels={"app": "cart"})
    (change,) = out
    assert change.key == "uid-shop-cart-1"
    assert change.record == PodIdentity(
        cluster="test",
        uid="uid-shop-cart-1",
        namespace="shop",
        name="cart-1",
        ips=("10.1.0.10", "fd00::a"),
        node="node-a",
        workload=WorkloadRef(kind="Deployment", name="cart"),
        labels={"app": "cart"},
        created=1714564800.0,
    )


def test_a_service_lists_the_workloads_of_every_pod_its_slices_name() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-2", "cart")
    add_pod(cat, "cart-canary-1", "cart-canary")
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1", "cart-2"])))
    cat.slice_seen(slim_slice(endpoint_slice("cart-b", "cart", ["cart-canary-1"])))
    cat.service_seen(slim_service(service("cart")))
    assert workloads(cat) == (cart_workload(), cart_workload("cart-canary"))


def test_the_same_records_come_out_whatever_the_order() -> None:
    cat, _ = catalog()
    cat.service_seen(slim_service(service("cart")))
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])))
    assert workloads(cat) == ()  # the pod is not known yet
    add_pod(cat, "cart-1", "cart")
    assert workloads(cat) == (cart_workload(),)


def test_a_pods_new_workload_moves_the_services_behind_it() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])))
    cat.service_seen(slim_service(service("cart")))
    assert cat.pod_workload("uid-shop-cart-1", WorkloadRef(kind="Rollout", name="cart"))
    assert workloads(cat) == (ServiceWorkload(namespace="shop", kind="Rollout", name="cart"),)


def test_a_slice_that_changes_or_goes_changes_its_service() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-v2-1", "cart-v2")
    cat.service_seen(slim_service(service("cart")))
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])))
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-v2-1"])))
    assert workloads(cat) == (cart_workload("cart-v2"),)
    cat.slice_deleted("shop/cart-a")
    assert workloads(cat) == ()


def test_a_relist_drops_slices_that_are_gone() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    cat.service_seen(slim_service(service("cart")))
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])))
    cat.slices_listed(set())
    assert workloads(cat) == ()


def test_a_pod_recreated_under_its_name_backs_the_service_after_its_predecessor_expires() -> None:
    cat, _ = catalog()
    add_pod(cat, "db-0", "db", uid="old")
    cat.service_seen(slim_service(service("cart")))
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["db-0"])))
    cat.pod_deleted("old", now=5.0)
    cat.pod_seen(
        slim_pod(pod("db-0", uid="new"), LabelPolicy()),
        WorkloadRef(kind="StatefulSet", name="db"),
        6.0,
    )
    assert workloads(cat) == (ServiceWorkload(namespace="shop", kind="StatefulSet", name="db"),)
    assert cat.expire(now=5.0 + RETENTION) == 1
    assert workloads(cat) == (ServiceWorkload(namespace="shop", kind="StatefulSet", name="db"),)


def test_a_finished_pod_is_published_as_deleted_once_with_the_time_it_was_first_seen_so() -> None:
    cat, out = catalog()
    add_pod(cat, "job-1", "report", now=1.0)
    add_pod(cat, "job-1", "report", now=2.0, phase="Succeeded")
    add_pod(cat, "job-1", "report", now=3.0, phase="Succeeded")  # a relist: nothing new
    assert [c.record.deleted for c in out if c.record is not None] == [None, 2.0]
    assert cat.pods_listed(set(), now=4.0) == ["uid-shop-job-1"]  # gone from the API ...
    assert len(out) == 2  # ... with nothing new to say,
    assert cat.expire(now=4.0 + RETENTION) == 1  # but the tombstone follows the retention
    assert out[-1] == Change(out[-1].topic, "uid-shop-job-1", None)


def test_an_external_name_service_has_no_workloads() -> None:
    cat, out = catalog()
    cat.service_seen(
        slim_service(service("stripe", type="ExternalName", cluster_ips=(), external_name="x.io"))
    )
    record = out[-1].record
    assert record is not None and record.external_name == "x.io"  # type: ignore[union-attr]
