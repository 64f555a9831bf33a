"""Objects in any order, records that converge: pods, services and what backs them."""

from __future__ import annotations

from helpers.apiobjects import endpoint_slice, pod, service

from callmap.wire import PodIdentity, ServiceWorkload, WorkloadRef
from watch.catalog import Catalog
from watch.identitytable import Change, IdentityTables
from watch.objects import slim_pod, slim_service, slim_slice
from watch.options import LabelPolicy

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
        ips_since=1714564800.0,  # first seen holding them, no better time: since created
    )


def test_a_service_lists_the_workloads_of_every_pod_its_slices_name() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-2", "cart")
    add_pod(cat, "cart-canary-1", "cart-canary")
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1", "cart-2"])), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-b", "cart", ["cart-canary-1"])), 1.0)
    cat.service_seen(slim_service(service("cart")), 1.0)
    assert workloads(cat) == (cart_workload(), cart_workload("cart-canary"))


def test_the_same_records_come_out_whatever_the_order() -> None:
    cat, _ = catalog()
    cat.service_seen(slim_service(service("cart")), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 1.0)
    assert workloads(cat) == ()  # the pod is not known yet
    add_pod(cat, "cart-1", "cart")
    assert workloads(cat) == (cart_workload(),)


def test_a_pods_new_workload_moves_the_services_behind_it() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 1.0)
    cat.service_seen(slim_service(service("cart")), 1.0)
    assert cat.pod_workload("uid-shop-cart-1", WorkloadRef(kind="Rollout", name="cart"), 1.0)
    assert workloads(cat) == (ServiceWorkload(namespace="shop", kind="Rollout", name="cart"),)


def test_a_slice_that_changes_or_goes_changes_its_service() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-v2-1", "cart-v2")
    cat.service_seen(slim_service(service("cart")), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-v2-1"])), 1.0)
    assert workloads(cat) == (cart_workload("cart-v2"),)
    cat.slice_deleted("shop/cart-a", 1.0)
    assert workloads(cat) == ()


def test_a_relist_drops_slices_that_are_gone() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    cat.service_seen(slim_service(service("cart")), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 1.0)
    cat.slices_listed(set(), 1.0)
    assert workloads(cat) == ()


def test_a_pod_recreated_under_its_name_backs_the_service_after_its_predecessor_expires() -> None:
    cat, _ = catalog()
    add_pod(cat, "db-0", "db", uid="old")
    cat.service_seen(slim_service(service("cart")), 1.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["db-0"])), 1.0)
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
        slim_service(service("stripe", type="ExternalName", cluster_ips=(), external_name="x.io")),
        1.0,
    )
    record = out[-1].record
    assert record is not None and record.external_name == "x.io"  # type: ignore[union-attr]


# --- since when they hold what they hold ------------------------------------------------

CREATED = 1714564800.0  # 2024-05-01T12:00:00Z, the objects' creationTimestamp


def pod_record(cat: Catalog, name: str) -> PodIdentity:
    record = cat.tables.pods.get(f"uid-shop-{name}")
    assert record is not None
    return record


def test_a_pod_holds_its_ips_since_its_sandbox_got_its_network() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart", network_ready="2024-05-01T12:00:07Z", now=CREATED + 60)
    assert pod_record(cat, "cart-1").ips_since == CREATED + 7


def test_a_pending_pod_holds_nothing_and_then_its_ips_from_when_they_were_seen() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart", ips=(), phase="Pending", now=CREATED + 1)
    assert pod_record(cat, "cart-1").ips_since is None
    add_pod(cat, "cart-1", "cart", now=CREATED + 30)
    assert pod_record(cat, "cart-1").ips_since == CREATED + 30
    add_pod(cat, "cart-1", "cart", labels={"app": "cart", "v": "2"}, now=CREATED + 90)
    assert pod_record(cat, "cart-1").ips_since == CREATED + 30  # the same IPs: the same time


def test_a_pod_first_seen_with_ips_holds_them_since_its_kubelet_started_it() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart", start_time="2024-05-01T12:00:03Z", now=CREATED + 600)
    assert pod_record(cat, "cart-1").ips_since == CREATED + 3


def test_a_pod_carries_its_hostname_and_subdomain() -> None:
    cat, _ = catalog()
    add_pod(cat, "db-0", "db", hostname="db-0", subdomain="db-peers")
    record = pod_record(cat, "db-0")
    assert (record.hostname, record.subdomain) == ("db-0", "db-peers")


def test_a_service_versions_its_workloads_from_when_they_change() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-v2-1", "cart-v2")
    cat.service_seen(slim_service(service("cart")), 5.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 6.0)
    record = cat.tables.services.get("shop/cart")
    assert record is not None and record.created == CREATED
    assert record.workloads_since is None  # the first workloads seen stand since its creation
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-v2-1"])), 50.0)
    record = cat.tables.services.get("shop/cart")
    assert record is not None and record.workloads == (cart_workload("cart-v2"),)
    assert record.workloads_since == 50.0
    cat.service_seen(slim_service(service("cart", ports=[{"port": 81}])), 70.0)
    record = cat.tables.services.get("shop/cart")
    assert record is not None and record.workloads_since == 50.0  # the same workloads


def test_a_service_recreated_under_its_name_starts_afresh() -> None:
    cat, _ = catalog()
    add_pod(cat, "cart-1", "cart")
    add_pod(cat, "cart-v2-1", "cart-v2")
    cat.service_seen(slim_service(service("cart")), 5.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-1"])), 6.0)
    cat.slice_seen(slim_slice(endpoint_slice("cart-a", "cart", ["cart-v2-1"])), 50.0)
    cat.service_deleted("shop/cart", 60.0)
    cat.service_seen(slim_service(service("cart")), 70.0)
    record = cat.tables.services.get("shop/cart")
    assert record is not None and record.deleted is None and record.workloads_since is None


def test_a_service_export_marks_its_service_exported_in_any_order() -> None:
    cat, out = catalog()
    assert not cat.export_seen("shop/cart")  # before the service: nothing to publish yet
    cat.service_seen(slim_service(service("cart")), 1.0)
    assert cat.tables.services.get("shop/cart").exported  # type: ignore[union-attr]
    cat.service_seen(slim_service(service("web")), 1.0)
    assert cat.export_seen("shop/web") and out[-1].record.exported  # type: ignore[union-attr]
    assert not cat.export_seen("shop/web")  # seen again: no change
    assert cat.exports_listed({"shop/web"}) == ["shop/cart"]  # cart's export is gone
    assert not cat.tables.services.get("shop/cart").exported  # type: ignore[union-attr]
    assert cat.export_deleted("shop/web") and not out[-1].record.exported  # type: ignore[union-attr]
